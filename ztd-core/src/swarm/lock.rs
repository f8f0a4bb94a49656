//! The cluster-wide deploy lock of a Swarm stack, on Swarm's own versioned updates: a service
//! `<name>-ztd-lock` that never runs a task (zero replicas) carries the holder in a label, and
//! taking it is an update made on the version ztd read (compare-and-swap, decided by the Raft
//! leader), so two deploys from two machines through two managers cannot both win. The same
//! service carries the journal of a switch in progress, so any machine can see, resume or undo
//! it.

use std::collections::HashMap;

use bollard::models::{
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};
use bollard::query_parameters::UpdateServiceOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::stack::Stack;
use crate::swarm::{Cluster, LABEL_PROJECT, LABEL_ROLE, out_of_sequence, spec_label};

/// The lock service's label naming its holder (JSON; empty when free).
pub const LABEL_HOLDER: &str = "ztd.swarm.holder";
/// Its label holding the journal of a switch in progress (JSON; empty when none).
pub const LABEL_JOURNAL: &str = "ztd.swarm.journal";

/// The lock service of a stack.
pub fn service(stack: &Stack) -> String {
    format!("{}-ztd-lock", stack.name)
}

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The tool.
    pub tool: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process ID there.
    pub pid: u32,
    /// When it took the lock (Unix seconds).
    pub since: i64,
    /// The manager it went through.
    pub manager: String,
}

impl Holder {
    fn me(tool: &str, manager: &str) -> Holder {
        Holder {
            tool: tool.to_string(),
            host: hostname(),
            pid: std::process::id(),
            since: chrono::Utc::now().timestamp(),
            manager: manager.to_string(),
        }
    }

    /// A holder on this machine whose process is gone: its lock is stale.
    pub fn is_dead_here(&self) -> bool {
        if self.host != hostname() {
            return false;
        }
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
    }

    /// One line naming it.
    pub fn describe(&self) -> String {
        let since = chrono::DateTime::from_timestamp(self.since, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        format!(
            "{} (pid {} on {}, through manager {}, since {since})",
            self.tool, self.pid, self.host, self.manager
        )
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// The lock's holder and journal, as the cluster has them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockState {
    /// Its holder, if taken.
    pub holder: Option<Holder>,
    /// The journal of a switch in progress.
    pub journal: Option<Value>,
}

/// The holder and journal a lock service's spec carries.
pub fn read_state(spec: &ServiceSpec) -> Result<LockState> {
    let parse = |key: &str| -> Result<Option<Value>> {
        match spec_label(spec, key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => serde_json::from_str(text)
                .map(Some)
                .map_err(|e| Error::State(format!("the cluster lock's {key} is unreadable: {e}"))),
        }
    };
    let holder =
        match parse(LABEL_HOLDER)? {
            Some(v) => Some(serde_json::from_value(v).map_err(|e| {
                Error::State(format!("the cluster lock's holder is unreadable: {e}"))
            })?),
            None => None,
        };
    Ok(LockState {
        holder,
        journal: parse(LABEL_JOURNAL)?,
    })
}

/// The lock, held.
#[derive(Debug)]
pub struct ClusterLock {
    name: String,
    holder: Holder,
}

fn lock_spec(stack: &Stack, holder: &Holder) -> Result<ServiceSpec> {
    let held = serde_json::to_string(holder)
        .map_err(|e| Error::State(format!("cannot write the lock holder: {e}")))?;
    Ok(ServiceSpec {
        name: Some(service(stack)),
        labels: Some(HashMap::from([
            (LABEL_PROJECT.to_string(), stack.name.clone()),
            (LABEL_ROLE.to_string(), "lock".to_string()),
            (LABEL_HOLDER.to_string(), held),
            (LABEL_JOURNAL.to_string(), String::new()),
        ])),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                // Never runs (zero replicas): any local image name does.
                image: Some(crate::proxy::image()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Take the lock for `tool`, or exit 7 naming its holder. A holder on this machine whose
/// process is gone is taken over (said on stderr); one elsewhere is broken only by
/// `ztd-rollback --break-lock`.
pub async fn acquire(cluster: &Cluster, stack: &Stack, tool: &str) -> Result<ClusterLock> {
    let name = service(stack);
    let me = Holder::me(tool, cluster.engine.host());
    let docker = cluster.engine.client();
    for _ in 0..5 {
        let Some(found) = cluster.service(&name).await? else {
            let answer = cluster
                .engine
                .swarm_request(
                    &format!("create service {name}"),
                    docker.create_service(lock_spec(stack, &me)?, None),
                )
                .await?;
            match answer {
                Ok(_) => return Ok(ClusterLock { name, holder: me }),
                // Another deploy made it first: read who holds it.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => continue,
                Err(err) => return Err(err.into()),
            }
        };
        let spec = found.spec.unwrap_or_default();
        let state = read_state(&spec)?;
        if let Some(holder) = &state.holder {
            if holder.is_dead_here() {
                crate::warn!(
                    "taking over the cluster lock of {}, which is no longer running",
                    holder.describe()
                );
            } else {
                return Err(Error::Locked(format!(
                    "another deploy of {} holds the cluster lock: {}; wait for it, or if it died elsewhere: ztd-rollback --orchestrator swarm --break-lock",
                    stack.name,
                    holder.describe()
                )));
            }
        }
        let version = found.version.and_then(|v| v.index).unwrap_or_default();
        let mut spec = spec;
        let held = serde_json::to_string(&me)
            .map_err(|e| Error::State(format!("cannot write the lock holder: {e}")))?;
        spec.labels
            .get_or_insert_with(HashMap::new)
            .insert(LABEL_HOLDER.to_string(), held);
        let answer = cluster
            .engine
            .swarm_request(
                &format!("take the lock {name}"),
                docker.update_service(
                    &name,
                    spec,
                    UpdateServiceOptions {
                        version: i32::try_from(version).unwrap_or_default(),
                        ..Default::default()
                    },
                    None,
                ),
            )
            .await?;
        match answer {
            Ok(_) => return Ok(ClusterLock { name, holder: me }),
            // Someone changed it since it was read: read it again and decide again.
            Err(err) if out_of_sequence(&err) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(Error::Locked(format!(
        "the cluster lock of {} keeps changing: another deploy is taking it",
        stack.name
    )))
}

impl ClusterLock {
    /// Write (or clear) the journal, only while this process still holds the lock.
    pub async fn set_journal(&self, cluster: &Cluster, journal: Option<&Value>) -> Result<()> {
        let text = journal.map(Value::to_string).unwrap_or_default();
        self.change(cluster, |spec| {
            spec.labels
                .get_or_insert_with(HashMap::new)
                .insert(LABEL_JOURNAL.to_string(), text.clone());
        })
        .await
    }

    /// Let go of the lock (the journal stays as it is).
    pub async fn release(self, cluster: &Cluster) -> Result<()> {
        self.change(cluster, |spec| {
            spec.labels
                .get_or_insert_with(HashMap::new)
                .insert(LABEL_HOLDER.to_string(), String::new());
        })
        .await
    }

    async fn change(&self, cluster: &Cluster, edit: impl Fn(&mut ServiceSpec)) -> Result<()> {
        let me = &self.holder;
        cluster
            .update_own_service(&self.name, |spec| {
                let state = read_state(spec)?;
                if state.holder.as_ref() != Some(me) {
                    return Err(Error::Locked(format!(
                        "the cluster lock was taken from this deploy (now: {})",
                        state
                            .holder
                            .map_or_else(|| "nobody".to_string(), |h| h.describe())
                    )));
                }
                edit(spec);
                Ok(())
            })
            .await
    }
}

/// Break the lock of a deploy that died elsewhere; its journal stays for `--resume` or a
/// rollback. Returns who held it.
pub async fn break_lock(cluster: &Cluster, stack: &Stack) -> Result<Option<Holder>> {
    let name = service(stack);
    if cluster.service(&name).await?.is_none() {
        return Ok(None);
    }
    // The holder as it was in the version the update replaced.
    let was = std::cell::RefCell::new(None);
    cluster
        .update_own_service(&name, |spec| {
            *was.borrow_mut() = read_state(spec)?.holder;
            spec.labels
                .get_or_insert_with(HashMap::new)
                .insert(LABEL_HOLDER.to_string(), String::new());
            Ok(())
        })
        .await?;
    Ok(was.into_inner())
}
