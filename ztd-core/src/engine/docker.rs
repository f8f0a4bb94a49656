//! The real engine: the `Engine` trait implemented over the Docker Engine API with bollard,
//! connecting to the engine the docker CLI would use (see `endpoint`) and negotiating the API
//! version so engines as old as 20.10 (API 1.41) work, with a one-line reason for each way
//! connecting can fail. Every call has a deadline
//! (`ZTD_ENGINE_TIMEOUT`), so an engine that stops answering is an error that names the call,
//! never a hang.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerConfig, ContainerInspectResponse, ContainerStateStatusEnum, ContainerStatsResponse,
    EndpointSettings, HealthStatusEnum, HostConfig,
};
use bollard::query_parameters::{
    EventsOptions, KillContainerOptions, ListContainersOptions, LogsOptions, StatsOptions,
    StopContainerOptions,
};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, future::join_all};

use crate::endpoint::{Endpoint, Transport};
use crate::engine::{
    ContainerInfo, ContainerQuery, DockerHealth, Engine, EngineEvent, EventStream, ExecOutput,
    HealthcheckCommand, ImageDetails, LogLine, LogQuery, ProcessInfo, ResourceSample, RunState,
    VolumeSpec,
};
use crate::error::{Error, Result, one_line};
use crate::units::{duration_from_env, format_deadline};

/// How long to wait for the engine to answer the first request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The setting that bounds every other call to the engine.
pub const ENGINE_TIMEOUT_VAR: &str = "ZTD_ENGINE_TIMEOUT";
/// Its default.
pub const DEFAULT_ENGINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The oldest Engine API ztd speaks (Docker 20.10).
const MIN_API: (usize, usize) = (1, 41);
/// The most output kept from an exec.
const EXEC_OUTPUT_LIMIT: usize = 4096;

/// A connection to a Docker engine.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: Docker,
    /// The engine, as resolved; its address names it in messages.
    endpoint: Endpoint,
    /// How long any one call may take (a stop: its grace on top).
    deadline: Duration,
}

impl DockerEngine {
    /// Resolve the engine as the docker CLI does (see `endpoint`), connect and negotiate the
    /// API version. A bad `ZTD_ENGINE_TIMEOUT` is a usage error, found before anything else.
    pub async fn connect() -> Result<DockerEngine> {
        let deadline =
            duration_from_env(ENGINE_TIMEOUT_VAR, DEFAULT_ENGINE_TIMEOUT).map_err(Error::Usage)?;
        let endpoint = Endpoint::from_process_env()?;
        DockerEngine::connect_within(endpoint, deadline).await
    }

    /// Connect to a resolved endpoint with this deadline per call.
    pub async fn connect_within(endpoint: Endpoint, deadline: Duration) -> Result<DockerEngine> {
        let host = endpoint.host.clone();
        let described = endpoint.describe();
        let unreachable = |why: String| {
            Error::EngineUnreachable(format!(
                "cannot reach the Docker engine at {described}: {why}"
            ))
        };
        // bollard's own timeout bounds the response headers of every request; it is what
        // bounds getting the event stream started. The calls' own deadlines fire a second
        // before it, so their message (which names the call) is the one seen.
        let seconds = header_timeout(deadline).as_secs();
        let made = match endpoint.transport()? {
            Transport::Unix(path) => {
                Docker::connect_with_unix(&path, seconds, bollard::API_DEFAULT_VERSION)
            }
            Transport::Http(address) => {
                Docker::connect_with_http(&address, seconds, bollard::API_DEFAULT_VERSION)
            }
            Transport::Tls {
                address,
                ca,
                cert,
                key,
            } => Docker::connect_with_ssl(
                &address,
                &key,
                &cert,
                &ca,
                seconds,
                bollard::API_DEFAULT_VERSION,
            ),
        };
        let docker = made
            .map_err(|e| unreachable(connect_reason(&e, &endpoint)))?
            .with_timeout(header_timeout(deadline));
        let negotiated = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?;
        let docker = match negotiated {
            Ok(docker) => docker,
            Err(err) => {
                return Err(match err {
                    // Something answers there, and it is not a Docker engine.
                    bollard::errors::Error::DockerResponseServerError {
                        status_code: 404, ..
                    } => unreachable("the server there has no Docker API (404 on /version)".into()),
                    bollard::errors::Error::DockerResponseServerError {
                        status_code,
                        message,
                    } => Error::Engine(format!(
                        "the Docker engine at {described} refused /version ({status_code}): {}",
                        one_line(&message)
                    )),
                    other => unreachable(connect_reason(&other, &endpoint)),
                });
            }
        };
        check_api(&docker.client_version(), &host)?;
        if let Some(note) = endpoint.remote_note() {
            crate::warn!("{note}");
        }
        Ok(DockerEngine {
            docker,
            endpoint,
            deadline,
        })
    }

    /// The engine's address, as resolved.
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// The resolved engine, for the Compose children of the same run.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The bollard client, for the Swarm calls the `Engine` trait does not carry (`swarm`).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// One Swarm request within the engine deadline (see [`DockerEngine::request`]): the
    /// bollard error is handed back as is, for a caller that accepts some refusals.
    pub async fn swarm_request<T>(
        &self,
        call: &str,
        request: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<std::result::Result<T, bollard::errors::Error>> {
        self.request(call, request).await
    }

    /// One Swarm call within the engine deadline, its error mapped like every other call's.
    pub async fn swarm_call<T>(
        &self,
        call: &str,
        request: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        self.within(call, async { Ok(request.await?) }).await
    }

    /// The error of a call that got no answer in time.
    fn no_answer(&self, call: &str, within: &str) -> Error {
        Error::EngineUnreachable(format!(
            "the Docker engine at {} did not answer `{call}` within {within}",
            self.endpoint.host
        ))
    }

    /// Run `work` (one call, or a whole read) within the engine deadline.
    async fn within<T>(&self, call: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
        let within = format!("{} ({ENGINE_TIMEOUT_VAR})", format_deadline(self.deadline));
        bounded(self.deadline, work)
            .await
            .ok_or_else(|| self.no_answer(call, &within))?
            .map_err(|err| self.timed_out(err, call, &within))
    }

    /// One request within the engine deadline; its bollard error is handed back as is, for
    /// callers that accept some refusals (304 not modified, 403 already exists).
    async fn request<T>(
        &self,
        call: &str,
        request: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<std::result::Result<T, bollard::errors::Error>> {
        self.within(call, async { Ok(request.await) }).await
    }

    /// bollard's own header timeout, should it fire first, still names the call.
    fn timed_out(&self, err: Error, call: &str, within: &str) -> Error {
        match err {
            Error::EngineUnreachable(msg) if msg.contains("Timeout error") => {
                self.no_answer(call, within)
            }
            other => other,
        }
    }

    async fn inspect_as(&self, id: &str, label: &str) -> Result<ContainerInfo> {
        let call = format!("inspect container {label}");
        let response = self
            .within(&call, async {
                Ok(self.docker.inspect_container(id, None).await?)
            })
            .await?;
        Ok(container_info(response))
    }
}

/// An engine that speaks an API older than 1.41 is refused, naming both versions.
fn check_api(version: &bollard::ClientVersion, host: &str) -> Result<()> {
    if (version.major_version, version.minor_version) < MIN_API {
        return Err(Error::Engine(format!(
            "the Docker engine at {host} speaks API {}.{}; ztd needs API {}.{} or later (Docker 20.10+): upgrade the engine",
            version.major_version, version.minor_version, MIN_API.0, MIN_API.1
        )));
    }
    Ok(())
}

/// Why connecting failed, in one line that says what to do.
fn connect_reason(err: &bollard::errors::Error, endpoint: &Endpoint) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = match err {
        bollard::errors::Error::SocketNotFoundError(_) => {
            return io_reason(std::io::ErrorKind::NotFound, endpoint)
                .unwrap_or_else(|| one_line(&err.to_string()));
        }
        // Transparent: its own `source` skips the I/O error itself.
        bollard::errors::Error::IOError { err: io } => Some(io),
        other => Some(other),
    };
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && let Some(reason) = io_reason(io.kind(), endpoint)
        {
            return reason;
        }
        source = current.source();
    }
    if let Ok(Transport::Tls { ca, .. }) = endpoint.transport() {
        // The deepest cause says what TLS did not like (an unknown issuer, a bad certificate).
        let mut deepest: &(dyn std::error::Error + 'static) = err;
        while let Some(next) = deepest.source() {
            deepest = next;
        }
        let folder = ca
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return format!(
            "the TLS connection failed ({}): check ca.pem, cert.pem and key.pem in {folder}",
            one_line(&deepest.to_string())
        );
    }
    one_line(&err.to_string())
}

/// The reason for an I/O failure of this kind on the way to the engine, when it has one.
fn io_reason(kind: std::io::ErrorKind, endpoint: &Endpoint) -> Option<String> {
    use std::io::ErrorKind;
    let socket = match endpoint.transport() {
        Ok(Transport::Unix(path)) => Some(path),
        _ => None,
    };
    Some(match (kind, socket) {
        (ErrorKind::PermissionDenied, Some(path)) => format!(
            "permission denied on {path}: is this user in the docker group? (or run as root)"
        ),
        (ErrorKind::NotFound, Some(_)) => "no such socket: is dockerd running?".into(),
        (ErrorKind::ConnectionRefused, Some(_)) => {
            "nothing listens on the socket: is dockerd running?".into()
        }
        (ErrorKind::ConnectionRefused, None) => {
            "connection refused: is dockerd listening there?".into()
        }
        (ErrorKind::TimedOut, None) => "the connection timed out: is the address right?".into(),
        _ => return None,
    })
}

/// `work` unless `limit` passes first (None).
async fn bounded<T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, work).await.ok()
}

/// bollard's header timeout for a call bounded by `deadline`: a whole second past it.
fn header_timeout(deadline: Duration) -> Duration {
    Duration::from_secs(deadline.as_secs_f64().ceil() as u64 + 1)
}

/// A container id shortened as the docker CLI shows it; names are kept.
fn short(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

impl Engine for DockerEngine {
    fn remote_host(&self) -> Option<String> {
        (!self.endpoint.is_local()).then(|| self.endpoint.host.clone())
    }

    async fn list(&self, query: &ContainerQuery) -> Result<Vec<ContainerInfo>> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if !query.labels.is_empty() {
            filters.insert("label".into(), query.labels.clone());
        }
        let options = ListContainersOptions {
            all: query.all,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self
            .within("list containers", async {
                Ok(self.docker.list_containers(Some(options)).await?)
            })
            .await?;
        let inspections = join_all(summaries.iter().filter_map(|s| {
            let id = s.id.as_deref()?;
            let name = s
                .names
                .as_ref()
                .and_then(|names| names.first())
                .map_or_else(|| short(id), |n| n.trim_start_matches('/'));
            Some(self.inspect_as(id, name))
        }))
        .await;
        let mut containers = Vec::with_capacity(inspections.len());
        for inspected in inspections {
            match inspected {
                Ok(info) => containers.push(info),
                // Removed between the listing and the inspection: it is gone, not an error.
                Err(Error::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        containers.sort_by(|a, b| a.service.cmp(&b.service).then(a.name.cmp(&b.name)));
        Ok(containers)
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        self.inspect_as(id, short(id)).await
    }

    async fn exec(&self, id: &str, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        let container = short(id);
        let created = self
            .within(&format!("create an exec in container {container}"), async {
                Ok(self
                    .docker
                    .create_exec(
                        id,
                        CreateExecOptions {
                            attach_stdout: Some(true),
                            attach_stderr: Some(true),
                            cmd: Some(argv.to_vec()),
                            ..Default::default()
                        },
                    )
                    .await?)
            })
            .await?;
        let started = self
            .within(&format!("start an exec in container {container}"), async {
                Ok(self.docker.start_exec(&created.id, None).await?)
            })
            .await?;
        // The command itself is bounded by its own timeout.
        let run = async {
            let mut output = Vec::new();
            if let StartExecResults::Attached {
                output: mut stream, ..
            } = started
            {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    let bytes: &[u8] = chunk.as_ref();
                    let room = EXEC_OUTPUT_LIMIT.saturating_sub(output.len());
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            Ok::<_, Error>(output)
        };
        let output = match tokio::time::timeout(timeout, run).await {
            Ok(output) => output?,
            Err(_) => {
                return Ok(ExecOutput {
                    exit_code: None,
                    output: format!("still running after {}s", timeout.as_secs_f64()),
                });
            }
        };
        let inspected = self
            .within(
                &format!("inspect an exec in container {container}"),
                async { Ok(self.docker.inspect_exec(&created.id).await?) },
            )
            .await?;
        Ok(ExecOutput {
            exit_code: inspected.exit_code,
            output: String::from_utf8_lossy(&output).into_owned(),
        })
    }

    async fn logs(&self, id: &str, query: LogQuery) -> Result<Vec<LogLine>> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            since: query
                .since
                .map(|t| i32::try_from(t.timestamp()).unwrap_or(i32::MAX))
                .unwrap_or(0),
            tail: query
                .tail
                .map(|n| n.to_string())
                .unwrap_or_else(|| "all".into()),
            ..Default::default()
        };
        // The whole read is bounded: a log that does not end in time is an error, not a hang.
        self.within(&format!("read the log of container {}", short(id)), async {
            let mut stream = self.docker.logs(id, Some(options));
            let mut pending = String::new();
            let mut lines = Vec::new();
            while let Some(chunk) = stream.next().await {
                pending.push_str(&String::from_utf8_lossy(chunk?.as_ref()));
                while let Some(end) = pending.find('\n') {
                    let raw: String = pending.drain(..=end).collect();
                    push_log_line(&mut lines, raw.trim_end_matches(['\n', '\r']), query.since);
                }
            }
            if !pending.is_empty() {
                push_log_line(&mut lines, &pending, query.since);
            }
            Ok(lines)
        })
        .await
    }

    async fn stats(&self, id: &str) -> Result<ResourceSample> {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        self.within(
            &format!("read the stats of container {}", short(id)),
            async {
                let mut stream = self.docker.stats(id, Some(options));
                match stream.next().await {
                    Some(sample) => Ok(resource_sample(&sample?)),
                    None => Err(Error::Engine(format!("no stats for container {id}"))),
                }
            },
        )
        .await
    }

    async fn start(&self, id: &str) -> Result<()> {
        let call = format!("start container {}", short(id));
        match self
            .request(&call, self.docker.start_container(id, None))
            .await?
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            other => Ok(other?),
        }
    }

    async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let options = StopContainerOptions {
            t: Some(i32::try_from(timeout.as_secs_f64().ceil() as u64).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        // The engine answers a stop once the container is down: its grace, then the deadline.
        let limit = timeout + self.deadline;
        let docker = self.docker.clone().with_timeout(header_timeout(limit));
        let call = format!("stop container {}", short(id));
        let within = format!(
            "{} (a {} stop grace + {ENGINE_TIMEOUT_VAR} {})",
            format_deadline(limit),
            format_deadline(timeout),
            format_deadline(self.deadline)
        );
        let stopped = bounded(limit, docker.stop_container(id, Some(options)))
            .await
            .ok_or_else(|| self.no_answer(&call, &within))?;
        match stopped {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(bollard::errors::Error::RequestTimeoutError) => Err(self.no_answer(&call, &within)),
            other => Ok(other?),
        }
    }

    async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        let call = format!("kill container {} with {signal}", short(id));
        Ok(self
            .request(&call, self.docker.kill_container(id, Some(options)))
            .await??)
    }

    async fn connect(&self, network: &str, id: &str, aliases: &[String]) -> Result<()> {
        let request = bollard::models::NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: Some(bollard::models::EndpointSettings {
                aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
                ..Default::default()
            }),
        };
        let call = format!("connect container {} to network {network}", short(id));
        match self
            .request(&call, self.docker.connect_network(network, request))
            .await?
        {
            Ok(()) => Ok(()),
            // 403 "endpoint ... already exists": connected before.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403,
                message,
            }) if message.contains("already exists") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn disconnect(&self, network: &str, id: &str) -> Result<()> {
        let request = bollard::models::NetworkDisconnectRequest {
            container: id.to_string(),
            force: Some(true),
        };
        let call = format!("disconnect container {} from network {network}", short(id));
        match self
            .request(&call, self.docker.disconnect_network(network, request))
            .await?
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            }) if status_code == 404 || message.contains("is not connected") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn ensure_volume(&self, volume: &VolumeSpec) -> Result<()> {
        let call = format!("inspect volume {}", volume.name);
        match self
            .request(&call, self.docker.inspect_volume(&volume.name))
            .await?
        {
            Ok(_) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(err) => return Err(err.into()),
        }
        let request = bollard::models::VolumeCreateRequest {
            name: Some(volume.name.clone()),
            driver: volume.driver.clone(),
            driver_opts: Some(volume.driver_opts.clone().into_iter().collect()),
            labels: Some(volume.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let call = format!("create volume {}", volume.name);
        self.request(&call, self.docker.create_volume(request))
            .await??;
        Ok(())
    }

    async fn set_restart_policy(&self, id: &str, policy: &str) -> Result<()> {
        use bollard::models::{RestartPolicy, RestartPolicyNameEnum};
        let name = match policy {
            "" | "no" => RestartPolicyNameEnum::NO,
            "always" => RestartPolicyNameEnum::ALWAYS,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            p if p.starts_with("on-failure") => RestartPolicyNameEnum::ON_FAILURE,
            other => return Err(Error::State(format!("unknown restart policy {other:?}"))),
        };
        let retries = policy
            .strip_prefix("on-failure:")
            .and_then(|n| n.parse().ok());
        let body = bollard::models::ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(name),
                maximum_retry_count: retries,
            }),
            ..Default::default()
        };
        let call = format!("update the restart policy of container {}", short(id));
        Ok(self
            .request(&call, self.docker.update_container(id, body))
            .await??)
    }

    async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<()> {
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        let call = format!("tag image {} as {repo}:{tag}", short(image));
        Ok(self
            .request(&call, self.docker.tag_image(image, Some(options)))
            .await??)
    }

    async fn untag_image(&self, reference: &str) -> Result<()> {
        // Forced, a reference that a container's image still has is untagged, not refused;
        // an image in use is never removed.
        let options = bollard::query_parameters::RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        let call = format!("remove the image tag {reference}");
        self.request(
            &call,
            self.docker.remove_image(reference, Some(options), None),
        )
        .await??;
        Ok(())
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>> {
        let call = format!("inspect image {reference}");
        match self
            .request(&call, self.docker.inspect_image(reference))
            .await?
        {
            Ok(image) => Ok(Some(ImageDetails {
                id: image.id.unwrap_or_default(),
                repo_digests: image.repo_digests.unwrap_or_default(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn processes(&self, id: &str) -> Result<Vec<ProcessInfo>> {
        let options = bollard::query_parameters::TopOptions {
            ps_args: "-eo pid,args".into(),
        };
        let call = format!("list the processes of container {}", short(id));
        let top = self
            .request(&call, self.docker.top_processes(id, Some(options)))
            .await??;
        Ok(top
            .processes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|row| {
                let mut columns = row.into_iter();
                let pid = columns.next()?.trim().parse().ok()?;
                let args = columns.collect::<Vec<_>>().join(" ");
                Some(ProcessInfo { pid, args })
            })
            .collect())
    }

    async fn events(&self, query: &ContainerQuery) -> Result<EventStream> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("type".into(), vec!["container".into()]);
        if !query.labels.is_empty() {
            filters.insert("label".into(), query.labels.clone());
        }
        // The request goes out when the stream is first polled; `since` = now makes the engine
        // replay what happens in between, so no event after this call is lost.
        let now = Utc::now();
        let options = EventsOptions {
            since: Some(format!(
                "{}.{:09}",
                now.timestamp(),
                now.timestamp_subsec_nanos()
            )),
            filters: Some(filters),
            ..Default::default()
        };
        // The stream is long-lived by design; only getting it started is bounded (bollard's
        // header timeout), and a start that times out says so as every other call does.
        let no_answer = self.no_answer(
            "stream events",
            &format!(
                "{} ({ENGINE_TIMEOUT_VAR})",
                format_deadline(header_timeout(self.deadline))
            ),
        );
        let stream = self.docker.events(Some(options)).map(move |event| {
            let event = match event {
                Err(bollard::errors::Error::RequestTimeoutError) => {
                    return Err(no_answer.clone());
                }
                other => other?,
            };
            let actor = event.actor.unwrap_or_default();
            let attributes: std::collections::BTreeMap<String, String> =
                actor.attributes.unwrap_or_default().into_iter().collect();
            Ok(EngineEvent {
                container_id: actor.id.unwrap_or_default(),
                container_name: attributes.get("name").cloned().unwrap_or_default(),
                action: event.action.unwrap_or_default(),
                time_nano: event
                    .time_nano
                    .or(event.time.map(|t| t * 1_000_000_000))
                    .unwrap_or_default(),
                attributes,
            })
        });
        Ok(stream.boxed())
    }
}

fn push_log_line(lines: &mut Vec<LogLine>, raw: &str, since: Option<DateTime<Utc>>) {
    let (stamp, text) = raw.split_once(' ').unwrap_or((raw, ""));
    let Some(timestamp) = parse_time(stamp) else {
        return;
    };
    if since.is_some_and(|since| timestamp < since) {
        return;
    }
    lines.push(LogLine {
        timestamp,
        text: text.to_string(),
    });
}

/// Parse an engine timestamp; Docker's zero time ("0001-01-01T00:00:00Z") means never.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (parsed.timestamp() > 0).then_some(parsed)
}

fn container_info(response: ContainerInspectResponse) -> ContainerInfo {
    let state = response.state.unwrap_or_default();
    let config = response.config.unwrap_or_default();
    let host = response.host_config.unwrap_or_default();
    let (addresses, networks) = addresses_and_networks(
        response
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default(),
    );
    let deployment_color_env = config
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(|e| e.strip_prefix("DEPLOYMENT_COLOR=").map(str::to_string));
    let healthcheck = config.healthcheck.as_ref().and_then(|h| {
        HealthcheckCommand::from_test(h.test.as_deref().unwrap_or_default(), h.timeout)
    });
    let published_ports = published_ports(&host);
    let exposed_ports = exposed_ports(&config);
    let mut info = ContainerInfo {
        id: response.id.unwrap_or_default(),
        name: response
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        service: String::new(),
        color: None,
        project: None,
        state: run_state(state.status),
        health: docker_health(state.health.and_then(|h| h.status)),
        restart_count: response.restart_count.unwrap_or(0).max(0) as u64,
        image: config.image.unwrap_or_default(),
        image_id: response.image.unwrap_or_default(),
        version: None,
        started_at: state.started_at.as_deref().and_then(parse_time),
        finished_at: state.finished_at.as_deref().and_then(parse_time),
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        restart_policy: host
            .restart_policy
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "no".into()),
        addresses,
        exposed_ports,
        published_ports,
        networks,
        healthcheck,
        deployment_color_env,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
    };
    info.apply_labels();
    info
}

fn run_state(status: Option<ContainerStateStatusEnum>) -> RunState {
    match status {
        Some(ContainerStateStatusEnum::CREATED) => RunState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => RunState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => RunState::Removing,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        _ => RunState::Unknown,
    }
}

fn docker_health(status: Option<HealthStatusEnum>) -> DockerHealth {
    match status {
        Some(HealthStatusEnum::STARTING) => DockerHealth::Starting,
        Some(HealthStatusEnum::HEALTHY) => DockerHealth::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => DockerHealth::Unhealthy,
        _ => DockerHealth::None,
    }
}

/// The container's addresses, sorted, and each network it joins with its aliases there.
fn addresses_and_networks(
    endpoints: HashMap<String, EndpointSettings>,
) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut addresses: Vec<String> = endpoints
        .values()
        .filter_map(|endpoint| endpoint.ip_address.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    addresses.sort();
    let networks = endpoints
        .into_iter()
        .map(|(name, endpoint)| (name, endpoint.aliases.unwrap_or_default()))
        .collect();
    (addresses, networks)
}

/// The host ports the container publishes, sorted, once each.
fn published_ports(host: &HostConfig) -> Vec<u16> {
    let mut ports: Vec<u16> = host
        .port_bindings
        .clone()
        .unwrap_or_default()
        .into_values()
        .flatten()
        .flatten()
        .filter_map(|b| b.host_port.and_then(|p| p.parse().ok()))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The TCP ports the container's image exposes, sorted.
fn exposed_ports(config: &ContainerConfig) -> Vec<u16> {
    let mut ports: Vec<u16> = config
        .exposed_ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.strip_suffix("/tcp").and_then(|n| n.parse().ok()))
        .collect();
    ports.sort_unstable();
    ports
}

fn resource_sample(stats: &ContainerStatsResponse) -> ResourceSample {
    let memory = stats.memory_stats.clone().unwrap_or_default();
    let usage = memory.usage.unwrap_or(0);
    // As the docker CLI: page cache that can be reclaimed is not "used" memory.
    let inactive = memory
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    let cpu = stats.cpu_stats.clone().unwrap_or_default();
    ResourceSample {
        memory_usage: usage.saturating_sub(inactive),
        memory_limit: memory.limit.unwrap_or(0),
        cpu_total_ns: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
        system_cpu_ns: cpu.system_cpu_usage.unwrap_or(0),
        online_cpus: cpu.online_cpus.unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_times_parse_and_zero_means_never() {
        assert!(parse_time("0001-01-01T00:00:00Z").is_none());
        let t = parse_time("2026-11-26T03:11:41.123456789Z").expect("valid");
        assert_eq!(t.timestamp_subsec_nanos(), 123_456_789);
        assert!(parse_time("garbage").is_none());
    }

    #[test]
    fn a_call_past_the_deadline_names_itself_and_the_engine() {
        let docker = Docker::connect_with_unix("/dev/null", 120, bollard::API_DEFAULT_VERSION)
            .expect("a client is made without connecting");
        let engine = DockerEngine {
            docker,
            endpoint: Endpoint {
                host: "unix:///dev/null".into(),
                source: crate::endpoint::Source::DockerHost,
                tls: None,
            },
            deadline: Duration::from_millis(50),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let err = runtime
            .block_on(engine.within(
                "inspect container web-blue",
                std::future::pending::<Result<()>>(),
            ))
            .expect_err("never answers");
        assert_eq!(
            err,
            Error::EngineUnreachable(
                "the Docker engine at unix:///dev/null did not answer `inspect container web-blue` within 50ms (ZTD_ENGINE_TIMEOUT)".into()
            )
        );
        assert_eq!(err.exit_status().code(), 3);
    }

    #[test]
    fn ids_are_shortened_names_kept_and_bollard_waits_a_second_longer() {
        let id = "3f2a".repeat(16);
        assert_eq!(short(&id), &id[..12]);
        assert_eq!(short("web-blue"), "web-blue");
        assert_eq!(
            header_timeout(Duration::from_secs(10)),
            Duration::from_secs(11)
        );
        assert_eq!(
            header_timeout(Duration::from_millis(500)),
            Duration::from_secs(2)
        );
    }

    fn unix(path: &str) -> Endpoint {
        Endpoint {
            host: format!("unix://{path}"),
            source: crate::endpoint::Source::Default,
            tls: None,
        }
    }

    #[test]
    fn socket_errors_say_what_to_do() {
        use std::io::{Error as IoError, ErrorKind};
        let socket = unix("/var/run/docker.sock");
        let denied = bollard::errors::Error::IOError {
            err: IoError::from(ErrorKind::PermissionDenied),
        };
        assert_eq!(
            connect_reason(&denied, &socket),
            "permission denied on /var/run/docker.sock: is this user in the docker group? (or run as root)"
        );
        let missing = bollard::errors::Error::SocketNotFoundError("/tmp/x.sock".into());
        assert_eq!(
            connect_reason(&missing, &unix("/tmp/x.sock")),
            "no such socket: is dockerd running?"
        );
        let refused = bollard::errors::Error::IOError {
            err: IoError::from(ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            connect_reason(&refused, &socket),
            "nothing listens on the socket: is dockerd running?"
        );
        let tcp = Endpoint {
            host: "tcp://10.0.0.9:2375".into(),
            source: crate::endpoint::Source::DockerHost,
            tls: None,
        };
        assert_eq!(
            connect_reason(&refused, &tcp),
            "connection refused: is dockerd listening there?"
        );
        // Any other failure keeps its own words, on one line.
        let other = bollard::errors::Error::IOError {
            err: IoError::other("broken\npipe"),
        };
        assert_eq!(connect_reason(&other, &socket), "broken pipe");
    }

    #[test]
    fn an_engine_older_than_api_1_41_is_refused_naming_both_versions() {
        let old = bollard::ClientVersion {
            major_version: 1,
            minor_version: 40,
        };
        let err = check_api(&old, "unix:///var/run/docker.sock").expect_err("too old");
        assert_eq!(err.exit_status().code(), 4);
        assert!(err.message().contains("speaks API 1.40"), "{err}");
        assert!(err.message().contains("needs API 1.41 or later"), "{err}");
        for ok in [(1, 41), (1, 53), (2, 0)] {
            let version = bollard::ClientVersion {
                major_version: ok.0,
                minor_version: ok.1,
            };
            assert!(check_api(&version, "h").is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn log_lines_before_since_are_dropped() {
        let mut lines = Vec::new();
        let since = parse_time("2026-11-26T03:00:01Z");
        push_log_line(&mut lines, "2026-11-26T03:00:00.5Z old line", since);
        push_log_line(&mut lines, "2026-11-26T03:00:01.5Z new line", since);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "new line");
    }
}
