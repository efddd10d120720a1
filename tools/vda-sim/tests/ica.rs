//! ICA mode on loopback: the detect string, echo, `STREAM <n>`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a failed test"
)]

mod support;

use std::time::Duration;

use gatehouse_vda_sim::ICA_DETECT;
use gatehouse_vda_sim::pattern::PatternChecker;
use support::{run, spawn_sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect_ica() -> (gatehouse_vda_sim::SimHandle, TcpStream) {
    let sim = spawn_sim(Duration::from_secs(60), 1 << 22).await;
    let mut stream = TcpStream::connect(sim.ica.unwrap()).await.unwrap();
    let mut detect = [0; 6];
    stream.read_exact(&mut detect).await.unwrap();
    assert_eq!(detect, ICA_DETECT);
    (sim, stream)
}

#[test]
fn speaks_first_with_the_detect_string_then_echoes() {
    run(async {
        let (sim, mut stream) = connect_ica().await;
        stream.write_all(b"hello ica").await.unwrap();
        let mut echo = [0; 9];
        stream.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hello ica");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (mut reader, mut writer) = stream.into_split();
        let write = tokio::spawn(async move {
            writer.write_all(&big).await.unwrap();
            writer.shutdown().await.unwrap();
            big
        });
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, write.await.unwrap(), "echo, then a half-close");
        sim.stop().await;
    });
}

#[test]
fn streams_the_requested_bytes_then_half_closes() {
    run(async {
        let (sim, mut stream) = connect_ica().await;
        stream.write_all(b"STREAM 3000001\n").await.unwrap();
        let mut checker = PatternChecker::new();
        let mut buf = vec![0; 65_536];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            checker.feed(&buf[..n]).unwrap();
        }
        assert_eq!(checker.offset(), 3_000_001);
        // The sim only half-closed: it still reads (and discards).
        stream.write_all(b"ignored").await.unwrap();
        stream.shutdown().await.unwrap();
        sim.stop().await;
    });
}

#[test]
fn echoes_a_prefix_of_the_verb_at_end_of_input() {
    run(async {
        let (sim, mut stream) = connect_ica().await;
        stream.write_all(b"STR").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"STR");
        sim.stop().await;
    });
}

#[test]
fn closes_on_a_malformed_stream_request() {
    run(async {
        let (sim, mut stream) = connect_ica().await;
        stream.write_all(b"STREAM lots\n").await.unwrap();
        let mut back = Vec::new();
        let _ = stream.read_to_end(&mut back).await;
        assert!(back.is_empty());
        sim.stop().await;
    });
}
