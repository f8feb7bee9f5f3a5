//! Alert e-mails through a real SMTP server (Python's aiosmtpd, from PyPI) with STARTTLS.

use std::collections::BTreeMap;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_mailed_over_starttls_to_the_noc_and_the_account_after_a_failed_try_and_a_restart() {
    let dir = common::temp_dir("email");
    if Command::new("python3").args(["-c", "import aiosmtpd"]).status().map_or(true, |s| !s.success()) {
        eprintln!("skipped: Python's aiosmtpd is not installed (.ci/run installs it: pip install aiosmtpd)");
        return;
    }
    let Some((cert, key)) = common::test_cert(&dir) else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
    let _smtp = Smtp(
        Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg("--tlscert")
            .arg(&cert)
            .arg("--tlskey")
            .arg(&key)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
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

    // tollguard restarted, the mail server up: the mail goes on the next try.
    let server =
        tollguard_server::Server::start(common::rater(), tollguard_engine::policy::Policy::builtin(), opts)
            .unwrap();
    assert_eq!(server.deliver(t0 + jiff::SignedDuration::from_secs(5)).await, 1);
    let new = maildir.join("new");
    let mails: Vec<_> = std::fs::read_dir(&new)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(mails.len(), 1, "one mail to both recipients");
    // Headers unfolded, quoted-printable soft line breaks joined.
    let m = &mails[0].replace("\r\n", "\n").replace("\n ", " ").replace("=\n", "");
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
