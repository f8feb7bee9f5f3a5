//! `tollguard serve` as a process: killed with SIGKILL in the middle of a stream of call
//! records, restarted, and compared with a clean run.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollguard"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request on its own connection; (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {out:?}")))?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

struct Served {
    child: Child,
    port: u16,
}

/// `tollguard serve` on `db` and `port` with the quickstart deck, standard output dropped.
fn serve_command(db: &Path, port: u16) -> Command {
    let deck = root().join("examples/quickstart/rates.csv");
    let mut c = bin();
    c.args(["serve", "--rates", deck.to_str().unwrap(), "--country", "NL", "--tz", "Europe/Amsterdam"])
        .args(["--database", db.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null());
    c
}

fn serve(db: &Path) -> Served {
    let port = free_port();
    let child = serve_command(db, port).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/readyz", "", None).map(|r| r.0).ok() != Some(200) {
        assert!(Instant::now() < deadline, "tollguard serve did not come up on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Served { child, port }
}

fn token(db: &Path, scope: &str) -> String {
    let out = bin()
        .args(["token", "create", "--database", db.to_str().unwrap(), "--name", scope, "--scope", scope])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// 1,600 records of 8 accounts that ended 5 to 40 minutes ago: East Timor, Dutch mobiles and
/// landlines, some unanswered; in batches of 20.
fn batches() -> Vec<String> {
    let now = jiff::Timestamp::now();
    let mut all = vec![];
    for i in 0..1600u64 {
        let account = format!("acct{}", i % 8);
        let to = match i % 5 {
            0 => format!("00670771{:05}", i),
            1 | 2 => format!("06{:08}", 10_000_000 + i),
            _ => format!("020{:07}", 1_000_000 + i),
        };
        let billsec = if i % 7 == 0 { 0 } else { 20 + (i * 37) % 600 };
        let end = now - jiff::SignedDuration::from_secs(300 + (i as i64 * 13) % 2100);
        let answer = end - jiff::SignedDuration::from_secs(billsec as i64);
        let start = answer - jiff::SignedDuration::from_secs(5);
        let mut r = json!({
            "call_id": format!("kill-{i}"), "account": account, "extension": format!("2{:02}", i % 40),
            "to": to, "start": start.to_string(), "end": end.to_string(), "billsec": billsec,
        });
        if billsec > 0 {
            r["answer"] = json!(answer.to_string());
        } else {
            r["disposition"] = json!("no_answer");
        }
        all.push(r);
    }
    all.chunks(20).map(|c| Value::Array(c.to_vec()).to_string()).collect()
}

fn usage(port: u16, token: &str) -> Vec<(String, Value)> {
    (0..8)
        .map(|a| {
            let (st, body) = http(port, "GET", &format!("/v1/accounts/acct{a}"), token, None).unwrap();
            assert_eq!(st, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let limits: Vec<Value> = v["limits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| json!([l["limit"], l["used"], l["extension"]]))
                .collect();
            (format!("acct{a}"), json!({ "limits": limits, "destinations_seen": v["destinations_seen"] }))
        })
        .collect()
}

#[test]
fn sigkill_in_the_middle_of_a_record_stream_loses_nothing_and_counts_nothing_twice() {
    let dir = std::env::temp_dir().join(format!("tollguard-sigkill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let batches = Arc::new(batches());

    // A clean run: every batch once.
    let clean_db = dir.join("clean.db");
    let clean_token = token(&clean_db, "operator");
    let mut clean = serve(&clean_db);
    for b in batches.iter() {
        let (st, body) = http(clean.port, "POST", "/v1/cdrs", &clean_token, Some(b)).unwrap();
        assert_eq!(st, 200, "{body}");
    }
    let want = usage(clean.port, &clean_token);
    clean.child.kill().unwrap();
    let _ = clean.child.wait();

    // The run that is killed: a sender streams batches while the server is killed with SIGKILL.
    let db = dir.join("killed.db");
    let tok = token(&db, "operator");
    let mut first = serve(&db);
    let acked = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (batches, acked, tok, port) = (batches.clone(), acked.clone(), tok.clone(), first.port);
        std::thread::spawn(move || {
            for b in batches.iter() {
                match http(port, "POST", "/v1/cdrs", &tok, Some(b)) {
                    Ok((200, _)) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => return, // the server is gone: this batch and the rest are sent again
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < 30 {
        assert!(Instant::now() < deadline, "the stream did not get going");
        std::thread::sleep(Duration::from_millis(2));
    }
    first.child.kill().unwrap(); // SIGKILL
    let _ = first.child.wait();
    sender.join().unwrap();
    let done = acked.load(Ordering::SeqCst);
    assert!(done < batches.len(), "the kill came after the whole stream: {done}");

    // Restart; the client sends again from the first batch it has no answer for (at least once),
    // and, as if the answer to the last acknowledged batch had been lost too, that one as well.
    let second = serve(&db);
    let mut duplicates = 0;
    for b in &batches[done - 1..] {
        let (st, body) = http(second.port, "POST", "/v1/cdrs", &tok, Some(b)).unwrap();
        assert_eq!(st, 200, "{body}");
        duplicates += serde_json::from_str::<Value>(&body).unwrap()["duplicates"].as_u64().unwrap();
    }
    eprintln!(
        "killed after {done} of {} batches acknowledged; {duplicates} records sent again were duplicates",
        batches.len()
    );
    let got = usage(second.port, &tok);
    let mut second = second;
    second.child.kill().unwrap();
    let _ = second.child.wait();

    // Nothing lost: every record stored once; nothing counted twice: usage as in the clean run.
    let store = tollguard_store::Store::open(&db).unwrap();
    assert_eq!(store.cdr_count().unwrap(), 1600);
    assert!(
        (20..=40).contains(&duplicates),
        "the batch sent twice, and at most the one in flight at the kill: {duplicates}"
    );
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_finishes_the_requests_flushes_the_store_and_exits_zero() {
    let dir = std::env::temp_dir().join(format!("tollguard-sigterm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("tg.db");
    let tok = token(&db, "operator");
    let mut served = serve(&db);
    let (st, body) = http(
        served.port,
        "POST",
        "/v1/authorize",
        &tok,
        Some(r#"{"call_id":"t1","account":"acme","from":"201","to":"0201234567"}"#),
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = served.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tollguard serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // The decision made just before the signal is in the store.
    let store = tollguard_store::Store::open(&db).unwrap();
    assert!(store.decision("t1").unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_incident_report_from_the_running_service_as_csv_html_and_pdf() {
    let dir = std::env::temp_dir().join(format!("tollguard-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("tg.db");
    let tok = token(&db, "operator");
    let mut served = serve(&db);
    // Saturday night, 11 June 2011: acme's first call to East Timor is denied and alerted; a
    // record shows a 20-minute call there that went through another way.
    let (st, body) = http(
        served.port,
        "POST",
        "/v1/authorize",
        &tok,
        Some(r#"{"call_id":"tl1","account":"acme","extension":"213","from":"213","to":"0067077123456","time":"2011-06-11T23:10:00+02:00"}"#),
    )
    .unwrap();
    assert!(st == 200 && body.contains(r#""allow":false"#), "{body}");
    let rec = r#"[{"call_id":"tl3","account":"acme","extension":"213","to":"006707754605","start":"2011-06-11T23:20:00+02:00","answer":"2011-06-11T23:20:10+02:00","end":"2011-06-11T23:40:10+02:00","billsec":1200}]"#;
    let (st, body) = http(served.port, "POST", "/v1/cdrs", &tok, Some(rec)).unwrap();
    assert_eq!(st, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (_, body) = http(served.port, "GET", "/v1/incidents", &tok, None).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(id) = v["incidents"][0]["id"].as_i64() {
            break id;
        }
        assert!(Instant::now() < deadline, "no incident: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = served.child.kill();
    let _ = served.child.wait();
    let deck = root().join("examples/quickstart/rates.csv");
    let report = |format: &str, out: Option<&Path>| {
        let mut c = bin();
        c.args(["report", "incident", &id.to_string(), "--format", format, "--vat-percent", "21"])
            .args(["--database", db.to_str().unwrap(), "--rates", deck.to_str().unwrap()])
            .args(["--country", "NL", "--tz", "Europe/Amsterdam"]);
        if let Some(o) = out {
            c.arg("--out").arg(o);
        }
        c.output().unwrap()
    };
    let out = report("csv", None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.starts_with("call_id,time,extension,dialled,e164,country,number_type,risk,decision,rules,"),
        "{csv}"
    );
    assert!(
        csv.contains("\ntl1,2011-06-11 23:10:00,213,0067077123456,+67077123456,TL,mobile,critical,denied,"),
        "{csv}"
    );
    assert!(csv.contains(",1200,record,670 East Timor 1.4500/min fee 0.0000 60/60 s,29.0000\n"), "{csv}");
    // 29.00 + 21% VAT (6.09) = 35.09.
    assert!(csv.contains("VAT 21% EUR 6.0900; cost incl. VAT EUR 35.0900"), "{csv}");
    let html = dir.join("incident.html");
    assert!(report("html", Some(&html)).status.success());
    assert!(std::fs::read_to_string(&html).unwrap().contains("<h1>Incident 1: account acme</h1>"));
    // The carrier's records of the same night (Asterisk CSV, Amsterdam time): tl3 a minute longer
    // under its own id, and a call to East Timor the service never saw.
    let carrier = dir.join("carrier.csv");
    std::fs::write(
        &carrier,
        concat!(
            "\"acme\",\"213\",\"006707754605\",\"from-internal\",\"\",\"SIP/213-1\",\"SIP/kpn-1\",\"Dial\",\"\",",
            "\"2011-06-11 23:20:02\",\"2011-06-11 23:20:12\",\"2011-06-11 23:41:12\",1270,1260,\"ANSWERED\",",
            "\"DOCUMENTATION\",\"kpn-1\",\"\"\n",
            "\"acme\",\"213\",\"006707754606\",\"from-internal\",\"\",\"SIP/213-2\",\"SIP/kpn-2\",\"Dial\",\"\",",
            "\"2011-06-11 23:25:00\",\"2011-06-11 23:25:10\",\"2011-06-11 23:35:10\",610,600,\"ANSWERED\",",
            "\"DOCUMENTATION\",\"kpn-2\",\"\"\n",
        ),
    )
    .unwrap();
    let out = bin()
        .args(["report", "incident", &id.to_string(), "--format", "csv", "--vat-percent", "21"])
        .args(["--database", db.to_str().unwrap(), "--rates", deck.to_str().unwrap()])
        .args(["--country", "NL", "--tz", "Europe/Amsterdam"])
        .arg("--reconcile-with")
        .arg(&carrier)
        .args(["--reconcile-format", "asterisk"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    // Ours: tl3 (tl1 was denied). Theirs: 1260 s (21 minutes, 30.45) and 600 s (14.50).
    assert!(csv.contains("# total 1 2 1 1 0 1 1200 1860 29.0000 44.9500 15.9500\n"), "{csv}");
    let no_format = bin()
        .args(["report", "incident", &id.to_string(), "--database", db.to_str().unwrap()])
        .args(["--rates", deck.to_str().unwrap()])
        .arg("--reconcile-with")
        .arg(&carrier)
        .output()
        .unwrap();
    assert!(
        !no_format.status.success()
            && String::from_utf8_lossy(&no_format.stderr)
                .contains("--reconcile-with needs --reconcile-format"),
        "{}",
        String::from_utf8_lossy(&no_format.stderr)
    );
    // The same store's daily report of that Saturday: the East Timor call in its hour, a new destination.
    let daily = bin()
        .args(["report", "daily", "--account", "acme", "--date", "2011-06-11", "--format", "csv"])
        .args(["--database", db.to_str().unwrap(), "--rates", deck.to_str().unwrap()])
        .args(["--country", "NL", "--tz", "Europe/Amsterdam"])
        .output()
        .unwrap();
    assert!(daily.status.success(), "{}", String::from_utf8_lossy(&daily.stderr));
    let daily = String::from_utf8(daily.stdout).unwrap();
    assert!(
        daily.starts_with("hour,calls,answered,billsec,spend,usual_low,usual_high,above_usual\n"),
        "{daily}"
    );
    assert!(daily.contains("\n23,2,1,1200,29."), "{daily}");
    assert!(daily.contains("# destination TL mobile critical calls 2 billsec 1200 cost 29."), "{daily}");
    let bad = bin()
        .args(["report", "daily", "--account", "acme", "--date", "11-06-2011"])
        .args(["--database", db.to_str().unwrap(), "--rates", deck.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--date: expected YYYY-MM-DD")
    );
    // The PDF, printed by headless Chromium (.ci/run installs it).
    let pdf = dir.join("incident.pdf");
    let out = report("pdf", Some(&pdf));
    if String::from_utf8_lossy(&out.stderr).contains("none was found") {
        eprintln!("skipped the PDF: no Chromium on this machine (apt-get install -y chromium)");
    } else {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&pdf).unwrap();
        assert!(bytes.starts_with(b"%PDF-") && bytes.len() > 10_000, "{} bytes", bytes.len());
        // For people to look at.
        let keep = root().join("target/reports");
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&pdf, keep.join("incident.pdf"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_applies_a_new_policy_and_says_that_a_server_change_waits_for_a_restart() {
    let dir = std::env::temp_dir().join(format!("tollguard-sighup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("tg.db");
    let config = dir.join("tollguard.toml");
    let deck = root().join("examples/quickstart/rates.csv");
    let write_config = |server: &str, policy: &str| {
        std::fs::write(
            &config,
            format!(
                "[defaults]\ncountry = \"NL\"\ntimezone = \"Europe/Amsterdam\"\n\n[[decks]]\npath = {:?}\n\n[server]\n{server}\n\n{policy}",
                deck.to_str().unwrap()
            ),
        )
        .unwrap();
    };
    write_config("max_body_bytes = 1048576", "");
    let tok = token(&db, "operator");
    let port = free_port();
    let stderr = dir.join("stderr");
    let mut child = bin()
        .args(["serve", "--config", config.to_str().unwrap(), "--database", db.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/readyz", "", None).map(|r| r.0).ok() != Some(200) {
        assert!(Instant::now() < deadline, "tollguard serve did not come up on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ask = |id: &str| {
        let body = format!(r#"{{"call_id":"{id}","account":"acme","from":"201","to":"0201234567"}}"#);
        let (st, body) = http(port, "POST", "/v1/authorize", &tok, Some(&body)).unwrap();
        assert_eq!(st, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["allow"].as_bool().unwrap()
    };
    assert!(ask("h1"));
    // One call at a time for acme, and another body limit.
    let one = "[[policy.limit]]\nname = \"one_at_a_time\"\naccounts = [\"acme\"]\nmetric = \"concurrent\"\nmax = \"1\"\n";
    write_config("max_body_bytes = 2048", one);
    let hup = |what: &str| {
        let before = std::fs::read_to_string(&stderr).unwrap().matches("configuration reloaded").count();
        assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&stderr).unwrap().matches("configuration reloaded").count() == before {
            assert!(Instant::now() < deadline, "no reload after SIGHUP ({what})");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&stderr).unwrap()
    };
    let log = hup("policy and [server]");
    assert_eq!(log.matches("the [server] section changed").count(), 1, "{log}");
    assert!(!ask("h2"), "the new policy applies: h1 still runs");
    // [server] as at start again: nothing to say.
    write_config("max_body_bytes = 1048576", one);
    let log = hup("policy only");
    assert_eq!(log.matches("the [server] section changed").count(), 1, "said once: {log}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_during_the_start_up_rebuild_is_carried_out_after_it_and_does_not_stop_the_server() {
    // `systemctl reload` while a long log is handled again: SIGHUP's default action would end the
    // process (and systemd counts that as a clean exit: no restart).
    let dir = std::env::temp_dir().join(format!("tollguard-early-hup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("tg.db");
    let tok = token(&db, "operator");
    {
        // A log long enough that its rebuild outlasts the signal's way to the process: 40,000
        // calls, a few seconds apart, attempted and ended.
        let mut store = tollguard_store::Store::open(&db).unwrap();
        let t0: i64 = 1_767_600_000_000_000_000; // 2026-01-05T08:00:00Z
        store
            .batch(|b| {
                for n in 0..40_000i64 {
                    let call = format!("c{n}");
                    let attempt = json!({"call_id": call, "account": format!("acct{}", n % 50),
                        "extension": "201", "dialled": "0201234567"});
                    b.append_event(t0 + n * 3_000_000_000, "attempt", &attempt.to_string())?;
                    let end = json!({"call_id": call, "billsec": 60});
                    b.append_event(t0 + n * 3_000_000_000 + 65_000_000_000, "end", &end.to_string())?;
                }
                Ok(())
            })
            .unwrap();
    }
    let port = free_port();
    let stderr = dir.join("stderr");
    let mut child = serve_command(&db, port).stderr(std::fs::File::create(&stderr).unwrap()).spawn().unwrap();
    let log = || std::fs::read_to_string(&stderr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log().contains("handling the event log") {
        assert!(Instant::now() < deadline, "tollguard serve did not start: {}", log());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    let early = http(port, "GET", "/readyz", "", None);
    assert!(
        early.is_err() && !log().contains("listening on"),
        "the signal must come during the rebuild: make the log longer ({early:?}, {})",
        log()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/readyz", "", None).map(|r| r.0).ok() != Some(200) {
        let exited = child.try_wait().unwrap();
        assert!(exited.is_none(), "SIGHUP during the rebuild stopped the server ({exited:?}): {}", log());
        assert!(Instant::now() < deadline, "tollguard serve did not come up: {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The reload asked for is carried out once the server is up.
    while !log().contains("configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "the reload asked for during the rebuild did not happen: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, body) = http(port, "GET", "/v1/accounts/acct7", &tok, None).unwrap();
    assert_eq!(st, 200, "{body}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
