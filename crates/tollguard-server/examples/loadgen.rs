//! Open-loop load for `POST /v1/authorize` (used by bench/authorize.sh).
//!
//!     loadgen ADDR TOKEN RATE SECONDS [CONNECTIONS] [ACCOUNTS]
//!
//! Sends authorizations at a fixed RATE per second over CONNECTIONS keep-alive connections, each
//! on its own schedule; a call that is allowed is ended at once (`POST /v1/calls/{id}/end`) so
//! the server's running calls stay flat. With `ANSWER=1` in the environment it is answered first
//! (`POST /v1/calls/{id}/answer`), so the server also counts it as talking for a moment. Latency is measured from when a request was written;
//! tokio's timer wakes at millisecond steps, so a request counts as **late** when it is written
//! more than 2 ms after it was due: a server that falls behind shows up there (and in the latency
//! of what it then answers), not hidden by the generator waiting for it. Prints
//! `rate sent errors late p50_us p99_us p999_us max_us` on one line.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DESTINATIONS: [&str; 6] =
    ["0201234567", "0612345678", "004930123456", "0012125551234", "00441632960000", "0067077123456"];

async fn request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &str,
    body: &str,
) -> std::io::Result<(u16, bool)> {
    let msg = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(msg.as_bytes()).await?;
    buf.clear();
    let mut tmp = [0u8; 4096];
    loop {
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&tmp[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = std::str::from_utf8(&buf[..end]).map_err(std::io::Error::other)?;
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = stream.read(&mut tmp).await?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let allowed = buf[end + 4..end + 4 + len].windows(12).any(|w| w == b"\"allow\":true");
        return Ok((status, allowed));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: loadgen ADDR TOKEN RATE SECONDS [CONNECTIONS] [ACCOUNTS]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let token = args[2].clone();
    let rate: f64 = args[3].parse().expect("RATE");
    let seconds: f64 = args[4].parse().expect("SECONDS");
    let conns: usize = args.get(5).map_or(32, |c| c.parse().expect("CONNECTIONS"));
    let accounts: u64 = args.get(6).map_or(10_000, |a| a.parse().expect("ACCOUNTS"));
    let run = std::process::id();
    let answer_first = std::env::var("ANSWER").is_ok_and(|v| v == "1");
    let start = Instant::now() + Duration::from_millis(200);
    let per_conn = rate / conns as f64;
    let total_per_conn = (per_conn * seconds) as u64;
    let mut tasks = vec![];
    for c in 0..conns {
        let (addr, token) = (addr.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).ok();
            let mut lat = Vec::with_capacity(total_per_conn as usize);
            let mut errors = 0u64;
            let mut late = 0u64;
            let mut buf = Vec::with_capacity(4096);
            let auth = format!(
                "POST /v1/authorize HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            );
            let offset = Duration::from_secs_f64(c as f64 / rate);
            for k in 0..total_per_conn {
                let due = start + offset + Duration::from_secs_f64(k as f64 / per_conn);
                tokio::time::sleep_until(due.into()).await;
                let n = k * conns as u64 + c as u64;
                let call_id = format!("lg{run}-{n}");
                let account = (n.wrapping_mul(2_654_435_761)) % accounts;
                let to = DESTINATIONS[(n % DESTINATIONS.len() as u64) as usize];
                let body = format!(
                    r#"{{"call_id":"{call_id}","account":"acct{account:05}","from":"2{:02}","to":"{to}"}}"#,
                    n % 40
                );
                let sent = Instant::now();
                if sent.duration_since(due) > Duration::from_millis(2) {
                    late += 1;
                }
                match request(&mut stream, &mut buf, &auth, &body).await {
                    Ok((200, allowed)) => {
                        lat.push(sent.elapsed().as_micros() as u32);
                        if allowed && answer_first {
                            let answer = format!(
                                "POST /v1/calls/{call_id}/answer HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                            );
                            if !matches!(request(&mut stream, &mut buf, &answer, "{}").await, Ok((204, _))) {
                                errors += 1;
                            }
                        }
                        if allowed {
                            let end = format!(
                                "POST /v1/calls/{call_id}/end HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                            );
                            if !matches!(request(&mut stream, &mut buf, &end, r#"{"billsec":30}"#).await, Ok((204, _))) {
                                errors += 1;
                            }
                        }
                    }
                    _ => {
                        errors += 1;
                        lat.push(sent.elapsed().as_micros() as u32);
                        if let Ok(s) = TcpStream::connect(&addr).await {
                            stream = s;
                        }
                    }
                }
            }
            (lat, errors, late)
        }));
    }
    let mut all = vec![];
    let (mut errors, mut late) = (0, 0);
    for t in tasks {
        let (l, e, x) = t.await.expect("task");
        all.extend(l);
        errors += e;
        late += x;
    }
    all.sort_unstable();
    let q = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    println!(
        "{rate} {} {errors} {late} {} {} {} {}",
        all.len(),
        q(0.50),
        q(0.99),
        q(0.999),
        all.last().copied().unwrap_or(0)
    );
}
