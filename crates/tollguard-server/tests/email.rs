//! Alert e-mails and the daily report mail through a real SMTP server (Python's aiosmtpd, from
//! PyPI) with STARTTLS.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

struct Smtp(Child);
impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Smtp {
    /// Python's aiosmtpd on 127.0.0.1:`port`, STARTTLS with `cert`, writing what it gets to the
    /// Maildir `maildir`.
    fn start(port: u16, cert: &Path, key: &Path, maildir: &Path) -> Smtp {
        let smtp = Smtp(
            Command::new("python3")
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
                .arg("--tlscert")
                .arg(cert)
                .arg("--tlskey")
                .arg(key)
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(maildir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        smtp
    }
}

/// The mails in a Maildir, headers unfolded and quoted-printable soft line breaks joined.
fn mails(maildir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .map(|d| d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect())
        .unwrap_or_default();
    for m in &mut v {
        *m = m.replace("\r\n", "\n").replace("\n ", " ").replace("=\n", "");
    }
    v.sort();
    v
}

fn aiosmtpd() -> bool {
    let ok = Command::new("python3").args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: Python's aiosmtpd is not installed (.ci/run installs it: pip install aiosmtpd)");
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_mailed_over_starttls_to_the_noc_and_the_account_after_a_failed_try_and_a_restart() {
    let dir = common::temp_dir("email");
    if !aiosmtpd() {
        return;
    }
    let Some((cert, key)) = common::test_cert(&dir) else { return };
    let port = free_port();
    let maildir = dir.join("mail");
    let email = tollguard_server::email::Email {
        host: "localhost".into(),
        port,
        starttls: tollguard_server::email::StartTls::Required,
        ca_pem: Some(std::fs::read(&cert).unwrap()),
        credentials: None,
        from: "tollguard <tollguard@carrier.example>".into(),
        noc: vec!["noc@carrier.example".into()],
        accounts: BTreeMap::from([("acme".to_string(), vec!["it@acme.example".to_string()])]),
        min_severity: tollguard_engine::Severity::Warning,
        quiet: Duration::from_secs(600),
        public_url: "https://tollguard.carrier.example".into(),
        max_tries: 3,
        daily_report: None,
    };
    let opts =
        tollguard_server::Options { database: dir.join("tg.db"), email: Some(email), ..Default::default() };
    let server = tollguard_server::Server::start(
        common::rater(),
        tollguard_engine::policy::Policy::builtin(),
        opts.clone(),
    )
    .unwrap();
    let token =
        tollguard_server::create_token(&dir.join("tg.db"), "pbx", &tollguard_server::Scope::Integration)
            .unwrap();
    let app = server.router();
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/authorize")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from(
            r#"{"call_id":"m1","account":"acme","from":"210","to":"0067077123456","time":"2011-06-11T23:10:00+02:00"}"#,
        ))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    server.flush().await;
    // The mail server is down: the try fails and the mail waits in the outbox.
    let t0 = jiff::Timestamp::now();
    assert_eq!(server.deliver(t0).await, 1);
    assert_eq!(server.deliver(t0).await, 0, "not again before the backoff");
    drop(server);
    let _smtp = Smtp::start(port, &cert, &key, &maildir);

    // tollguard restarted, the mail server up: the mail goes on the next try.
    let server =
        tollguard_server::Server::start(common::rater(), tollguard_engine::policy::Policy::builtin(), opts)
            .unwrap();
    assert_eq!(server.deliver(t0 + jiff::SignedDuration::from_secs(5)).await, 1);
    let mails = mails(&maildir);
    assert_eq!(mails.len(), 1, "one mail to both recipients");
    let m = &mails[0];
    assert!(
        m.contains("Subject: [tollguard] critical: default.new_critical_destination_night on acme"),
        "{m}"
    );
    assert!(m.contains("noc@carrier.example") && m.contains("it@acme.example"), "{m}");
    assert!(m.contains("Content-Type: text/plain") && m.contains("Content-Type: text/html"), "{m}");
    let m = &m.replace("=3D", "=");
    assert!(m.contains("What was done: tollguard refused the call."), "{m}");
    assert!(m.contains("https://tollguard.carrier.example/v1/incidents?account=acme"), "{m}");
    // Delivered: nothing left to send.
    assert_eq!(server.deliver(t0 + jiff::SignedDuration::from_secs(600)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_report_is_mailed_each_morning_once_across_a_restart() {
    let dir = common::temp_dir("daily-mail");
    if !aiosmtpd() {
        return;
    }
    let Some((cert, key)) = common::test_cert(&dir) else { return };
    let port = free_port();
    let maildir = dir.join("mail");
    let _smtp = Smtp::start(port, &cert, &key, &maildir);
    let email = tollguard_server::email::Email {
        host: "localhost".into(),
        port,
        starttls: tollguard_server::email::StartTls::Required,
        ca_pem: Some(std::fs::read(&cert).unwrap()),
        credentials: None,
        from: "tollguard <tollguard@carrier.example>".into(),
        noc: vec!["noc@carrier.example".into()],
        accounts: BTreeMap::from([
            ("acme".to_string(), vec!["it@acme.example".to_string()]),
            ("quiet".to_string(), vec![]),
        ]),
        min_severity: tollguard_engine::Severity::Critical,
        quiet: Duration::from_secs(600),
        public_url: "https://tollguard.carrier.example/".into(),
        max_tries: 3,
        daily_report: Some(jiff::civil::time(7, 0, 0, 0)),
    };
    let db = dir.join("tg.db");
    let opts = tollguard_server::Options { database: db.clone(), email: Some(email), ..Default::default() };
    let start = || {
        tollguard_server::Server::start(
            common::rater(),
            tollguard_engine::policy::Policy::builtin(),
            opts.clone(),
        )
        .unwrap()
    };
    let server = start();
    let token = tollguard_server::create_token(&db, "noc", &tollguard_server::Scope::Operator).unwrap();
    // Monday 13 June 2011: two 5-minute calls to Amsterdam and ten minutes to East Timor.
    let records = serde_json::json!([
        { "call_id": "d1", "account": "acme", "extension": "210", "to": "0201234567",
          "start": "2011-06-13T10:00:00+02:00", "answer": "2011-06-13T10:00:05+02:00",
          "end": "2011-06-13T10:05:05+02:00", "billsec": 300 },
        { "call_id": "d2", "account": "acme", "extension": "211", "to": "0201234568",
          "start": "2011-06-13T11:00:00+02:00", "answer": "2011-06-13T11:00:05+02:00",
          "end": "2011-06-13T11:05:05+02:00", "billsec": 300 },
        { "call_id": "d3", "account": "acme", "extension": "213", "to": "006707754605",
          "start": "2011-06-13T14:00:00+02:00", "answer": "2011-06-13T14:00:10+02:00",
          "end": "2011-06-13T14:10:10+02:00", "billsec": 600 },
    ]);
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/cdrs")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(records.to_string()))
        .unwrap();
    let resp = server.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    server.flush().await;

    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    // Tuesday morning in Amsterdam: nothing before seven, Monday's report at seven, once.
    assert_eq!(server.queue_daily_reports(at("2011-06-14T06:59:00+02:00")).await, 0);
    assert_eq!(server.queue_daily_reports(at("2011-06-14T07:00:30+02:00")).await, 1, "acme only");
    assert_eq!(server.queue_daily_reports(at("2011-06-14T07:01:00+02:00")).await, 0);
    let wall = jiff::Timestamp::now();
    assert_eq!(server.deliver(wall).await, 1);
    assert_eq!(mails(&maildir).len(), 1);
    // Restarted later that morning: Monday is not mailed again; Wednesday brings Tuesday's.
    drop(server);
    let server = start();
    assert_eq!(server.queue_daily_reports(at("2011-06-14T09:00:00+02:00")).await, 0, "not again");
    assert_eq!(server.queue_daily_reports(at("2011-06-15T07:00:00+02:00")).await, 1);
    assert_eq!(server.deliver(wall + jiff::SignedDuration::from_secs(1)).await, 1);
    assert_eq!(server.deliver(wall + jiff::SignedDuration::from_secs(600)).await, 0, "both delivered");

    let mails = mails(&maildir);
    assert_eq!(mails.len(), 2);
    let monday = mails.iter().find(|m| m.contains("daily report acme 2011-06-13")).expect("Monday's mail");
    // 2 x 5 min at 0.012 + 10 min at 1.45 = 14.62.
    assert!(
        monday.contains("Subject: [tollguard] daily report acme 2011-06-13: EUR 14.6200, 3 calls"),
        "{monday}"
    );
    assert!(monday.contains("To: it@acme.example") && !monday.contains("noc@carrier.example"), "{monday}");
    assert!(
        monday.contains("Content-Type: text/plain") && monday.contains("Content-Type: text/html"),
        "{monday}"
    );
    let m = monday.replace("=3D", "=");
    assert!(m.contains("Calls: 3 (3 answered, 0 denied), 1200 billed seconds"), "{m}");
    // No history before: every country is new.
    assert!(m.contains("Countries new to the account: NL, TL"), "{m}");
    assert!(m.contains("https://tollguard.carrier.example/ui/accounts/acme/daily?date=2011-06-13"), "{m}");
    assert!(m.contains("filename=\"tollguard-acme-2011-06-13.csv\""), "{m}");
    assert!(m.contains("hour,calls,answered,billsec,spend,usual_low,usual_high,above_usual"), "{m}");
    let tuesday = mails.iter().find(|m| m.contains("daily report acme 2011-06-14")).expect("Tuesday's mail");
    assert!(tuesday.contains("EUR 0.0000, 0 calls"), "{tuesday}");
}
