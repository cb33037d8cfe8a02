//! The echo server on `IOStream`: every byte back, as it comes.
//!
//! ```text
//! cargo run --release --example echo_stream -- [ADDR]
//! ```

use ioloop::{IOLoop, IOStream, MioPoller, TcpServer};

fn echo(io: &mut IOLoop<MioPoller>, stream: &mut IOStream<MioPoller>) {
    let _ = stream.read_bytes(io, 64 * 1024, true, |io, stream, data| {
        if let Ok(data) = data {
            let _ = stream.write(io, &data);
            echo(io, stream);
        }
    });
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10001".into());
    let mut io = IOLoop::new(MioPoller::new()?);
    let server = TcpServer::bind(&mut io, addr.parse()?, echo)?;
    println!("listening on {}", server.local_addr(&io)?);
    Ok(io.start()?)
}
