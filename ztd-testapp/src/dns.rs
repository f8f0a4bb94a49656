//! A minimal DNS A-record lookup over UDP, because a static glibc binary cannot use NSS to
//! resolve names such as `db` through Docker's embedded DNS server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

/// Resolve `host:port`: numbers and /etc/hosts through the libc, else a DNS query to the
/// nameserver in /etc/resolv.conf.
pub fn resolve(host_port: &str) -> Result<SocketAddr, String> {
    if let Ok(mut addrs) = host_port.to_socket_addrs()
        && let Some(addr) = addrs.next()
    {
        return Ok(addr);
    }
    let (host, port) = host_port
        .rsplit_once(':')
        .ok_or_else(|| format!("{host_port}: expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("{host_port}: bad port"))?;
    let ip = query_a(host)?;
    Ok(SocketAddr::new(IpAddr::V4(ip), port))
}

fn nameserver() -> SocketAddr {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver"))
                    .then(|| words.next()?.parse::<IpAddr>().ok())
                    .flatten()
            })
        })
        .map_or_else(
            || SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53),
            |ip| SocketAddr::new(ip, 53),
        )
}

fn query_a(host: &str) -> Result<Ipv4Addr, String> {
    let id: u16 = (std::process::id() as u16) ^ 0x5a5a;
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in host.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).map_err(|_| format!("{host}: label too long"))?;
        packet.push(len);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    socket
        .send_to(&packet, nameserver())
        .map_err(|e| format!("{host}: {e}"))?;
    let mut buf = [0u8; 512];
    let len = socket.recv(&mut buf).map_err(|e| format!("{host}: {e}"))?;
    parse_answer(&buf[..len], id).ok_or_else(|| format!("{host}: no such host"))
}

fn skip_name(buf: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *buf.get(at)? as usize;
        if len == 0 {
            return Some(at + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += len + 1;
    }
}

fn parse_answer(buf: &[u8], id: u16) -> Option<Ipv4Addr> {
    if buf.len() < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id || buf[3] & 0x0f != 0 {
        return None;
    }
    let questions = u16::from_be_bytes([buf[4], buf[5]]);
    let answers = u16::from_be_bytes([buf[6], buf[7]]);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(buf, at)? + 4;
    }
    for _ in 0..answers {
        at = skip_name(buf, at)?;
        let kind = u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]);
        let len = u16::from_be_bytes([*buf.get(at + 8)?, *buf.get(at + 9)?]) as usize;
        let data = buf.get(at + 10..at + 10 + len)?;
        if kind == 1 && len == 4 {
            return Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_answer_after_a_cname() {
        let mut reply = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        reply.extend_from_slice(&[2, b'd', b'b', 0, 0, 1, 0, 1]);
        // CNAME answer pointing back at the question name.
        reply.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 172, 18, 0, 5]);
        assert_eq!(
            parse_answer(&reply, 0x1234),
            Some(Ipv4Addr::new(172, 18, 0, 5))
        );
        assert_eq!(parse_answer(&reply, 0x9999), None);
    }
}
