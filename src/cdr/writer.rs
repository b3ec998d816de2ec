//! The CDR writer: a thread that owns the output (a file opened for append, or standard output),
//! fed by the shards over a channel. Records are written in batches and flushed after each, so
//! a crash loses at most the batch being written; a clean shutdown closes the channel and waits
//! for the last line. A reload reopens the file (logrotate moves it, SIGHUP makes a new one).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Instant, SystemTime};

use super::CallRecord;

/// What the writer thread is told.
#[derive(Debug)]
pub enum Msg {
    /// A record to write.
    Record(Box<CallRecord>),
    /// Reopen the output (a reload), at this path (`-` is standard output).
    Reopen(PathBuf),
    /// Write everything received so far, then acknowledge.
    Flush(mpsc::SyncSender<()>),
}

/// The running writer's channel (its thread ends when every sender is gone).
#[derive(Debug)]
pub struct CdrWriter {
    tx: mpsc::Sender<Msg>,
}

enum Output {
    Stdout(io::Stdout),
    File(BufWriter<File>),
}

impl Output {
    fn open(path: &Path) -> io::Result<Output> {
        if path == Path::new("-") {
            return Ok(Output::Stdout(io::stdout()));
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Output::File(BufWriter::with_capacity(64 * 1024, file)))
    }

    fn write(&mut self, line: &str) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.lock().write_all(line.as_bytes()),
            Output::File(f) => f.write_all(line.as_bytes()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.lock().flush(),
            Output::File(f) => f.flush(),
        }
    }
}

impl CdrWriter {
    /// Opens `path` (an error here stops the daemon's start) and starts the thread.
    pub fn start(path: &Path) -> io::Result<CdrWriter> {
        let output = Output::open(path)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("callgate-cdr".into())
            .spawn(move || run(output, &rx))?;
        Ok(CdrWriter { tx })
    }

    /// A sender for a shard.
    pub fn sender(&self) -> mpsc::Sender<Msg> {
        self.tx.clone()
    }

    /// Reopens the output at `path` (a reload).
    pub fn reopen(&self, path: PathBuf) {
        let _ = self.tx.send(Msg::Reopen(path));
    }

    /// Waits until every record sent so far is written and flushed.
    pub fn flush(&self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }
}

fn run(mut output: Output, rx: &mpsc::Receiver<Msg>) {
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut acks = Vec::new();
        let anchor = (SystemTime::now(), Instant::now());
        while let Some(msg) = next {
            match msg {
                Msg::Record(r) => {
                    if let Err(e) = output.write(&r.to_line(anchor)) {
                        report(&mut failing, &e);
                    }
                }
                Msg::Reopen(path) => {
                    let _ = output.flush();
                    match Output::open(&path) {
                        Ok(o) => output = o,
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot reopen the CDR file; keeping the old one")
                        }
                    }
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        match output.flush() {
            Ok(()) => failing = false,
            Err(e) => report(&mut failing, &e),
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
    let _ = output.flush();
}

/// One log line when writing starts failing (a full disk must not flood the log).
fn report(failing: &mut bool, e: &io::Error) {
    if !*failing {
        tracing::error!(error = %e, "cannot write call detail records");
    }
    *failing = true;
}
