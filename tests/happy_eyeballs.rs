//! Connection setup on networks as they are (RFC 8305 and friends), on loopback:
//!
//! * a black-holed address (a listener whose accept queue is full drops further SYNs, so a
//!   connect to it hangs) given first and a live one second: the second is tried after the
//!   attempt delay and wins, long before the connect timeout; every address black-holed →
//!   a timeout naming each;
//! * an address that refused is tried last by the next session of the same options;
//! * `source_address` 127.0.0.2 is the address the server sees;
//! * IPv6 on `::1`, in brackets and bare, and the EHLO address literal `[IPv6:::1]` (skipped,
//!   with a message, where the machine has no IPv6 loopback).
//!
//! Times are asserted only against the configured delay (a lower bound the code sets) and
//! against the connect timeout with a wide margin, never as a tight measurement.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtpkit::client::{AttemptOutcome, ClientOptions, Greeted, Security, Timeouts};
use smtpkit::ErrorKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A listening socket nobody accepts from, with its accept queue filled: the kernel drops
/// further SYNs, so connecting to it hangs (until the client gives up).
struct BlackHole {
    address: SocketAddr,
    _listener: TcpListener,
    _filling: Vec<TcpStream>,
}

async fn black_hole() -> BlackHole {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let address = listener.local_addr().expect("addr");
    let mut filling = Vec::new();
    // Fill the queue: connects that complete at once until one hangs.
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(address)).await {
            Ok(Ok(stream)) => filling.push(stream),
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            Err(_) => {
                return BlackHole {
                    address,
                    _listener: listener,
                    _filling: filling,
                }
            }
        }
    }
    panic!("the accept queue of {address} never filled up");
}

/// A server that greets, answers EHLO and QUIT, and remembers each client's address and
/// EHLO line.
struct Greeter {
    address: SocketAddr,
    peers: Arc<Mutex<Vec<(SocketAddr, String)>>>,
}

async fn greeter(bind: &str) -> std::io::Result<Greeter> {
    let listener = TcpListener::bind(bind).await?;
    let address = listener.local_addr()?;
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = peers.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                if write.write_all(b"220 greeter ready\r\n").await.is_err() {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        seen.lock().expect("lock").push((peer, line.clone()));
                        b"250 greeter\r\n"
                    } else if line.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"502 no\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(Greeter { address, peers })
}

fn options(addresses: Vec<SocketAddr>, connect: Duration) -> ClientOptions {
    ClientOptions {
        security: Security::None,
        addresses,
        timeouts: Timeouts {
            connect,
            ..Timeouts::default()
        },
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn a_black_holed_first_address_loses_to_the_next_after_the_attempt_delay() {
    let hole = black_hole().await;
    let live = greeter("127.0.0.1:0").await.expect("greeter");
    let started = tokio::time::Instant::now();
    let opts = options(vec![hole.address, live.address], Duration::from_secs(20));
    let greeted = Greeted::open("mail.example.test", live.address.port(), opts)
        .await
        .expect("connects through the second address");
    let elapsed = started.elapsed();
    let attempts = greeted.connect_attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].address, hole.address);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Abandoned);
    assert_eq!(attempts[1].address, live.address);
    assert_eq!(attempts[1].outcome, AttemptOutcome::Connected);
    assert!(
        attempts[1].started_after >= Duration::from_millis(250),
        "the second attempt started after {:?}, before the attempt delay",
        attempts[1].started_after
    );
    // Not the 20 s connect timeout (a wide margin: the machine may be slow).
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    greeted
        .ehlo()
        .await
        .expect("ehlo")
        .quit()
        .await
        .expect("quit");
}

#[tokio::test]
async fn every_address_black_holed_is_a_timeout_naming_each() {
    let first = black_hole().await;
    let second = black_hole().await;
    let opts = ClientOptions {
        attempt_delay: Some(Duration::from_millis(100)),
        ..options(
            vec![first.address, second.address],
            Duration::from_millis(1500),
        )
    };
    let Err(err) = Greeted::open("mail.example.test", first.address.port(), opts).await else {
        panic!("nothing answers, yet it connected");
    };
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let text = err.to_string();
    for a in [first.address, second.address] {
        assert!(text.contains(&a.to_string()), "{a} not named in: {text}");
    }
    assert!(text.contains("no answer"), "{text}");
}

#[tokio::test]
async fn an_address_that_refused_is_tried_last_by_the_next_session() {
    // A port that was free a moment ago: nothing listens, so the connection is refused.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let live = greeter("127.0.0.1:0").await.expect("greeter");
    let opts = options(vec![refused, live.address], Duration::from_secs(20));
    let first = Greeted::open("mail.example.test", live.address.port(), opts.clone())
        .await
        .expect("the second address");
    let attempts = first.connect_attempts();
    assert!(
        matches!(attempts[0].outcome, AttemptOutcome::Failed(_)),
        "{attempts:?}"
    );
    // A refusal starts the next attempt at once, without the delay.
    assert!(
        attempts[1].started_after < Duration::from_millis(250),
        "{attempts:?}"
    );
    assert!(opts.recent_failures.contains(&refused));
    // The clone shares what was learnt: the live address comes first now.
    let second = Greeted::open("mail.example.test", live.address.port(), opts.clone())
        .await
        .expect("connects");
    let attempts = second.connect_attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].address, live.address);
}

#[tokio::test]
async fn the_source_address_is_what_the_server_sees() {
    let live = greeter("127.0.0.1:0").await.expect("greeter");
    let source: IpAddr = "127.0.0.2".parse().expect("ip");
    let opts = ClientOptions {
        source_address: Some(source),
        ..options(Vec::new(), Duration::from_secs(20))
    };
    let greeted = Greeted::open("127.0.0.1", live.address.port(), opts)
        .await
        .expect("connects from 127.0.0.2");
    greeted
        .ehlo()
        .await
        .expect("ehlo")
        .quit()
        .await
        .expect("quit");
    let peers = live.peers.lock().expect("lock").clone();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].0.ip(), source, "{peers:?}");

    // An IPv6 server address cannot be reached from an IPv4 source: named, not tried.
    let opts = ClientOptions {
        source_address: Some(source),
        ..options(Vec::new(), Duration::from_secs(5))
    };
    let Err(err) = Greeted::open("::1", 25, opts).await else {
        panic!("no address of the source's family, yet it connected");
    };
    assert!(err.to_string().contains("other address family"), "{err}");
    assert_eq!(err.kind(), ErrorKind::HostNotFound, "not retried: {err}");
}

#[tokio::test]
async fn ipv6_loopback_in_brackets_and_bare_with_the_ehlo_literal() {
    let live = match greeter("[::1]:0").await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("SKIPPED: this machine has no IPv6 loopback ({e})");
            return;
        }
    };
    for host in ["[::1]", "::1"] {
        let opts = options(Vec::new(), Duration::from_secs(20));
        let greeted = Greeted::open(host, live.address.port(), opts)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        greeted
            .ehlo()
            .await
            .expect("ehlo")
            .quit()
            .await
            .expect("quit");
    }
    let peers = live.peers.lock().expect("lock").clone();
    assert_eq!(peers.len(), 2);
    for (peer, ehlo) in &peers {
        assert!(peer.is_ipv6(), "{peer}");
        // RFC 5321 §4.1.3: the literal of an IPv6 address is tagged; a machine whose host name
        // is a fully-qualified domain name sends that instead.
        let name = ehlo.trim_start_matches("EHLO ");
        assert!(
            name == "[IPv6:::1]" || (name.contains('.') && !name.starts_with('[')),
            "EHLO {name}"
        );
    }
}
