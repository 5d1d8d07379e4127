//! delay-proxy: a loopback TCP forwarder that adds a fixed round-trip time, used by
//! bench/compare.sh in front of smtp-sink so that smtpkit, smtp-source and lettre all see
//! the same added latency.
//!
//! usage: delay-proxy --target 127.0.0.1:PORT --rtt-ms 20 [--listen 127.0.0.1:0] [--max-seconds 3600]
//!
//! Prints the port it listens on (one line) once ready. Each direction of each connection is
//! a delay line: every chunk read is released rtt/2 after it arrived, in arrival order.
//! Exits by itself after --max-seconds.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn usage() -> ! {
    eprintln!("usage: delay-proxy --target HOST:PORT --rtt-ms MS [--listen 127.0.0.1:0] [--max-seconds S]");
    std::process::exit(64)
}

fn main() {
    let mut target: Option<SocketAddr> = None;
    let mut rtt_ms: Option<u64> = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut max_seconds: u64 = 3600;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--target" => target = Some(v.parse().unwrap_or_else(|_| usage())),
            "--rtt-ms" => rtt_ms = Some(v.parse().unwrap_or_else(|_| usage())),
            "--listen" => listen = v.parse().unwrap_or_else(|_| usage()),
            "--max-seconds" => max_seconds = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let (Some(target), Some(rtt_ms)) = (target, rtt_ms) else { usage() };
    if !listen.ip().is_loopback() || !target.ip().is_loopback() {
        eprintln!("delay-proxy: loopback addresses only");
        std::process::exit(64);
    }
    // One thread is plenty for the benchmark's RTT rows and keeps the proxy's CPU use small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        println!("{port}");
        let _ = std::io::stdout().flush();
        let one_way = Duration::from_micros(rtt_ms * 1000 / 2);
        let accept_loop = async {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                tokio::spawn(handle(client, target, one_way));
            }
        };
        tokio::select! {
            _ = accept_loop => {}
            _ = tokio::time::sleep(Duration::from_secs(max_seconds)) => {
                eprintln!("delay-proxy: --max-seconds reached, exiting");
            }
        }
    });
}

async fn handle(client: TcpStream, target: SocketAddr, one_way: Duration) {
    let server = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("delay-proxy: connect {target}: {e}");
            return;
        }
    };
    // Forward as soon as a chunk is due: no Nagle on either leg.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    tokio::join!(
        delay_line(client_rx, server_tx, one_way),
        delay_line(server_rx, client_tx, one_way)
    );
}

/// Copies `src` to `dst`, holding each chunk for `delay`; order is kept; EOF is forwarded
/// (as a shutdown of the write side) after the data before it.
async fn delay_line(mut src: OwnedReadHalf, mut dst: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read_side = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match src.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        // Dropping tx ends the write side once everything queued was sent.
    };
    let write_side = async move {
        let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut out = Vec::new();
        'outer: loop {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(item) => pending.push_back(item),
                    None => break,
                }
            }
            while let Ok(item) = rx.try_recv() {
                pending.push_back(item);
            }
            let due = pending.front().map(|p| p.0).unwrap_or_else(Instant::now);
            tokio::time::sleep_until(due).await;
            // Everything due by now goes out in one write, oldest first.
            while let Ok(item) = rx.try_recv() {
                pending.push_back(item);
            }
            let now = Instant::now();
            out.clear();
            while pending.front().is_some_and(|p| p.0 <= now) {
                if let Some((_, bytes)) = pending.pop_front() {
                    out.extend_from_slice(&bytes);
                }
            }
            if !out.is_empty() && dst.write_all(&out).await.is_err() {
                break 'outer;
            }
        }
        let _ = dst.shutdown().await;
    };
    tokio::join!(read_side, write_side);
}
