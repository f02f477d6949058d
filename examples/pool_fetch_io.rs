//! I/O-bound work on a thread pool: `pool.submit(get, url).add_done_callback(parse)`, with
//! a pool of 13 threads. Instead of remote sites, the program starts its own slow web
//! service on `127.0.0.1` (every answer takes one second, standing in for a network wait),
//! so it runs offline. Thirteen pages come back in about one second instead of thirteen:
//! threads wait on I/O in parallel.
//!
//! Ports the tutorial's seed 004, its I/O example.
//!
//! Run: `cargo run --example pool_fetch_io`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use concurrent_futures::{Executor, Future, ThreadPoolExecutor};
use serde::{Deserialize, Serialize};

/// How long the service takes to answer.
const DELAY: Duration = Duration::from_secs(1);

/// Starts the slow service; returns its address.
fn start_slow_service() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(mut stream: TcpStream) {
    let mut request_line = String::new();
    if BufReader::new(&stream)
        .read_line(&mut request_line)
        .is_err()
    {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    std::thread::sleep(DELAY);
    let body = format!("<html>{}</html>", path.repeat(20));
    let _ = write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// Python's `{'url': url, 'content': resp.text}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Page {
    url: String,
    content: String,
}

fn get(url: String) -> Page {
    println!("GET {url}");
    let rest = url.strip_prefix("http://").expect("an http:// url");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).expect("connect to the service");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the answer");
    let content = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Page { url, content }
}

fn parse(future: &Future<Page>) {
    match future.result() {
        Ok(page) => println!("parse {}: content is {}", page.url, page.content.len()),
        Err(e) => println!("fetch failed: {e}"),
    }
}

fn main() {
    let addr = start_slow_service();
    let urls: Vec<String> = (0..13).map(|i| format!("http://{addr}/page/{i}")).collect();

    let pool = ThreadPoolExecutor::new(13);
    let start = Instant::now();
    for url in urls.iter().cloned() {
        pool.submit(get, url).add_done_callback(parse);
    }
    pool.shutdown(true);
    println!(
        "{} pages in {:.2} s with 13 threads (one at a time: {} s)",
        urls.len(),
        start.elapsed().as_secs_f64(),
        urls.len() as u64 * DELAY.as_secs()
    );
}
