//! The non-filesystem calls of WASI preview 1: arguments and environment,
//! clocks, `poll_oneoff` (clock subscriptions, and readiness of files,
//! directories' absence of it, pipes and stdio), `random_get` and
//! `sched_yield`.

use crate::ctx::{Kind, WasiCtx};
use crate::error::{io, WasiResult};
use crate::memory::GuestMemory;
use crate::stdio::Stream;
use backstop::{KillWaiter, WaitFor, Waited};
use rustix::time::{ClockId, Timespec};
use std::io::Seek;
use std::time::{Duration, Instant};
use wasi::*;

// ---- arguments and environment ---------------------------------------------

/// Writes a list of strings the way `args_get` / `environ_get` do: an array
/// of pointers at `ptrs`, NUL-terminated strings packed at `buf`.
fn write_strings(mem: &GuestMemory, list: &[Vec<u8>], ptrs: u32, buf: u32) -> WasiResult<()> {
    let total: usize = list.iter().map(|s| s.len() + 1).sum();
    mem.check(ptrs, list.len() * 4)?;
    mem.check(buf, total)?;
    let mut offset = buf;
    for (i, s) in list.iter().enumerate() {
        mem.write_u32(ptrs + 4 * i as u32, offset)?;
        mem.write(offset, s)?;
        mem.write(offset + s.len() as u32, &[0])?;
        offset += s.len() as u32 + 1;
    }
    Ok(())
}

fn write_sizes(mem: &GuestMemory, list: &[Vec<u8>], count: u32, size: u32) -> WasiResult<()> {
    mem.check(count, 4)?;
    mem.check(size, 4)?;
    let total: usize = list.iter().map(|s| s.len() + 1).sum();
    mem.write_u32(count, list.len() as u32)?;
    mem.write_u32(size, total as u32)
}

pub(crate) fn args_get(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    argv: u32,
    buf: u32,
) -> WasiResult<()> {
    write_strings(mem, &ctx.args, argv, buf)
}

pub(crate) fn args_sizes_get(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    argc: u32,
    size: u32,
) -> WasiResult<()> {
    write_sizes(mem, &ctx.args, argc, size)
}

pub(crate) fn environ_get(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    environ: u32,
    buf: u32,
) -> WasiResult<()> {
    write_strings(mem, &ctx.env, environ, buf)
}

pub(crate) fn environ_sizes_get(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    count: u32,
    size: u32,
) -> WasiResult<()> {
    write_sizes(mem, &ctx.env, count, size)
}

// ---- clocks ------------------------------------------------------------------

fn clock_id(id: i32) -> WasiResult<ClockId> {
    match id {
        0 => Ok(ClockId::Realtime),
        1 => Ok(ClockId::Monotonic),
        2 => Ok(ClockId::ProcessCPUTime),
        3 => Ok(ClockId::ThreadCPUTime),
        _ => Err(ERRNO_INVAL),
    }
}

fn to_nanos(t: Timespec) -> u64 {
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

pub(crate) fn clock_res_get(mem: &GuestMemory, id: i32, resolution: u32) -> WasiResult<()> {
    let id = clock_id(id)?;
    mem.check(resolution, 8)?;
    mem.write_u64(resolution, to_nanos(rustix::time::clock_getres(id)).max(1))
}

pub(crate) fn clock_time_get(
    mem: &GuestMemory,
    id: i32,
    _precision: u64,
    time: u32,
) -> WasiResult<()> {
    let id = clock_id(id)?;
    mem.check(time, 8)?;
    mem.write_u64(time, to_nanos(rustix::time::clock_gettime(id)))
}

// ---- poll_oneoff -------------------------------------------------------------

const SUBSCRIPTION_SIZE: u32 = 48;
const EVENT_SIZE: u32 = 32;

/// One event to report.
struct Event {
    userdata: u64,
    error: Errno,
    kind: Eventtype,
    nbytes: u64,
    hangup: bool,
}

impl Event {
    fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        b[8..10].copy_from_slice(&self.error.raw().to_le_bytes());
        b[10] = self.kind.raw();
        b[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        let flags = if self.hangup {
            EVENTRWFLAGS_FD_READWRITE_HANGUP
        } else {
            0
        };
        b[24..26].copy_from_slice(&flags.to_le_bytes());
        b
    }

    fn ready(userdata: u64, kind: Eventtype, nbytes: u64) -> Event {
        Event {
            userdata,
            error: ERRNO_SUCCESS,
            kind,
            nbytes,
            hangup: false,
        }
    }

    fn failed(userdata: u64, kind: Eventtype, error: Errno) -> Event {
        Event {
            userdata,
            error,
            kind,
            nbytes: 0,
            hangup: false,
        }
    }
}

/// What `poll_oneoff` waits for once the subscriptions are read: events
/// already due, clock deadlines, and subscriptions to the host's stdin
/// (the only source that may not be ready at once).
pub(crate) struct PollPlan {
    out: u32,
    nevents: u32,
    ready: Vec<Event>,
    /// (userdata, deadline; `None` is never).
    clocks: Vec<(u64, Option<Instant>)>,
    host_stdin: Vec<u64>,
}

/// Reads and checks the subscriptions, and works out which are ready now.
pub(crate) fn poll_prepare(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    subs: u32,
    out: u32,
    nsubscriptions: u32,
    nevents: u32,
) -> WasiResult<PollPlan> {
    if nsubscriptions == 0 {
        return Err(ERRNO_INVAL);
    }
    let bytes = mem.read(
        subs,
        nsubscriptions
            .checked_mul(SUBSCRIPTION_SIZE)
            .ok_or(ERRNO_FAULT)?,
    )?;
    mem.check(out, nsubscriptions as usize * EVENT_SIZE as usize)?;
    mem.check(nevents, 4)?;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());

    let mut plan = PollPlan {
        out,
        nevents,
        ready: Vec::new(),
        clocks: Vec::new(),
        host_stdin: Vec::new(),
    };
    let now = Instant::now();
    for sub in bytes.chunks_exact(SUBSCRIPTION_SIZE as usize) {
        let userdata = u64_at(sub, 0);
        match sub[8] {
            0 => {
                let id = u32_at(sub, 16);
                let timeout = u64_at(sub, 24);
                let flags = u16::from_le_bytes([sub[40], sub[41]]);
                let clock = match id {
                    0 => ClockId::Realtime,
                    1 => ClockId::Monotonic,
                    _ => {
                        plan.ready
                            .push(Event::failed(userdata, EVENTTYPE_CLOCK, ERRNO_NOTSUP));
                        continue;
                    }
                };
                let wait = if flags & SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME != 0 {
                    timeout.saturating_sub(to_nanos(rustix::time::clock_gettime(clock)))
                } else {
                    timeout
                };
                plan.clocks
                    .push((userdata, now.checked_add(Duration::from_nanos(wait))));
            }
            tag @ (1 | 2) => {
                let kind = if tag == 1 {
                    EVENTTYPE_FD_READ
                } else {
                    EVENTTYPE_FD_WRITE
                };
                let fd = u32_at(sub, 16);
                let event = match ctx.table.get(fd) {
                    Err(e) => Event::failed(userdata, kind, e),
                    Ok(d) if d.require(RIGHTS_POLL_FD_READWRITE).is_err() => {
                        Event::failed(userdata, kind, ERRNO_NOTCAPABLE)
                    }
                    Ok(d) => match (&d.kind, tag) {
                        (Kind::File(f), 1) => {
                            let mut f: &std::fs::File = f;
                            let size = io(f.metadata())?.len();
                            let pos = io(f.stream_position())?;
                            Event::ready(userdata, kind, size.saturating_sub(pos))
                        }
                        (Kind::File(_), _) => Event::ready(userdata, kind, 0),
                        (Kind::Stream(Stream::HostStdin), 1) => {
                            plan.host_stdin.push(userdata);
                            continue;
                        }
                        (Kind::Stream(s), 1) if s.is_readable() => {
                            let n = s.readable_bytes().unwrap_or(0);
                            Event::ready(userdata, kind, n)
                        }
                        (Kind::Stream(s), 2) if !s.is_readable() => Event::ready(userdata, kind, 0),
                        _ => Event::failed(userdata, kind, ERRNO_BADF),
                    },
                };
                plan.ready.push(event);
            }
            _ => return Err(ERRNO_INVAL),
        }
    }
    Ok(plan)
}

/// Waits until some subscription is ready, or a kill switch fires for the
/// run (then it returns no events: the run ends when the host function
/// returns), and writes the events.
pub(crate) fn poll_wait(
    mut plan: PollPlan,
    mem: &GuestMemory,
    kill: &KillWaiter,
) -> WasiResult<()> {
    let stdin = rustix::stdio::stdin();
    loop {
        let now = Instant::now();
        let mut events = std::mem::take(&mut plan.ready);
        for &(userdata, deadline) in &plan.clocks {
            if deadline.is_some_and(|d| d <= now) {
                events.push(Event::ready(userdata, EVENTTYPE_CLOCK, 0));
            }
        }
        let stdin_now = || kill.wait(Some((stdin, WaitFor::Readable)), Some(Duration::ZERO));
        if !plan.host_stdin.is_empty() && stdin_now() == Waited::Ready {
            for &userdata in &plan.host_stdin {
                events.push(Event::ready(userdata, EVENTTYPE_FD_READ, 0));
            }
        }
        if !events.is_empty() || kill.is_killed() {
            for (i, event) in events.iter().enumerate() {
                mem.write(plan.out + i as u32 * EVENT_SIZE, &event.to_bytes())?;
            }
            return mem.write_u32(plan.nevents, events.len() as u32);
        }
        // Until the nearest deadline (or for ever), on stdin if asked for.
        let until_deadline = plan
            .clocks
            .iter()
            .filter_map(|&(_, d)| d)
            .min()
            .map(|d| d.saturating_duration_since(now));
        let on_stdin = (!plan.host_stdin.is_empty()).then_some((stdin, WaitFor::Readable));
        kill.wait(on_stdin, until_deadline);
    }
}

// ---- random and scheduling -------------------------------------------------

pub(crate) fn random_get(mem: &GuestMemory, buf: u32, len: u32) -> WasiResult<()> {
    mem.check(buf, len as usize)?;
    let mut chunk = vec![0u8; (len as usize).min(64 << 10)];
    let mut done = 0u32;
    while done < len {
        let n = ((len - done) as usize).min(chunk.len());
        getrandom::getrandom(&mut chunk[..n]).map_err(|_| ERRNO_IO)?;
        mem.write(buf + done, &chunk[..n])?;
        done += n as u32;
    }
    Ok(())
}

pub(crate) fn sched_yield() -> WasiResult<()> {
    std::thread::yield_now();
    Ok(())
}
