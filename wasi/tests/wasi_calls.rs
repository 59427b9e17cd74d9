//! WASI preview 1 calls one by one: a WAT module imports every function of
//! `wasi_snapshot_preview1` and exports a guest wrapper for each, so the
//! tests drive each call with chosen arguments and inspect linear memory.
//! Covers the file lifecycle in a preopened temp dir (create, write, read
//! back, seek, tell, pread/pwrite, rename, readdir, stat, unlink, mkdir,
//! rmdir, symlink/readlink, hard link), every sandbox escape (`..`,
//! absolute paths, symlinks out, hard links and renames to or from
//! outside), rights enforcement, bad guest pointers (EFAULT, no trap),
//! clocks, random_get, poll_oneoff, and the calls that return an errno.

use backstop::{Engine, Instance, Linker, Module, Store, Val};
use backstop_wasi::{self as wasi, WasiCtx, WasiCtxBuilder, WritePipe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const EXIST: i32 = 20;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const ISDIR: i32 = 31;
const NOENT: i32 = 44;
const NOTEMPTY: i32 = 55;
const NOTSOCK: i32 = 57;
const NOTSUP: i32 = 58;
const SPIPE: i32 = 70;
const NOTCAPABLE: i32 = 76;

const OFLAGS_CREAT: i32 = 1;
const OFLAGS_DIRECTORY: i32 = 2;
const OFLAGS_EXCL: i32 = 4;
const OFLAGS_TRUNC: i32 = 8;
const RIGHTS_FD_READ: i64 = 1 << 1;
const RIGHTS_FD_WRITE: i64 = 1 << 6;
const RIGHTS_FD_SEEK: i64 = 1 << 2;
const RIGHTS_FD_SYNC: i64 = 1 << 4;
const RIGHTS_FD_FILESTAT_SET_TIMES: i64 = 1 << 23;
const RIGHTS_ALL: i64 = (1 << 30) - 1;
/// The rights Rust's std asks `path_open` for to read a file: read and
/// readdir, plus a fixed set it asks for whatever the access (advise,
/// fdstat_set_flags, filestat_get, filestat_set_times, seek, sync, tell,
/// and the path rights of a directory).
const RUST_STD_READ_RIGHTS: i64 = 0x0fbf_febe;
const FOLLOW: i32 = 1;
const PREOPEN: i32 = 3;

/// Every preview 1 function and its parameter types (all return an errno
/// except `proc_exit`).
const FUNCS: &[(&str, &str)] = &[
    ("args_get", "i32 i32"),
    ("args_sizes_get", "i32 i32"),
    ("environ_get", "i32 i32"),
    ("environ_sizes_get", "i32 i32"),
    ("clock_res_get", "i32 i32"),
    ("clock_time_get", "i32 i64 i32"),
    ("fd_advise", "i32 i64 i64 i32"),
    ("fd_allocate", "i32 i64 i64"),
    ("fd_close", "i32"),
    ("fd_datasync", "i32"),
    ("fd_fdstat_get", "i32 i32"),
    ("fd_fdstat_set_flags", "i32 i32"),
    ("fd_fdstat_set_rights", "i32 i64 i64"),
    ("fd_filestat_get", "i32 i32"),
    ("fd_filestat_set_size", "i32 i64"),
    ("fd_filestat_set_times", "i32 i64 i64 i32"),
    ("fd_pread", "i32 i32 i32 i64 i32"),
    ("fd_prestat_get", "i32 i32"),
    ("fd_prestat_dir_name", "i32 i32 i32"),
    ("fd_pwrite", "i32 i32 i32 i64 i32"),
    ("fd_read", "i32 i32 i32 i32"),
    ("fd_readdir", "i32 i32 i32 i64 i32"),
    ("fd_renumber", "i32 i32"),
    ("fd_seek", "i32 i64 i32 i32"),
    ("fd_sync", "i32"),
    ("fd_tell", "i32 i32"),
    ("fd_write", "i32 i32 i32 i32"),
    ("path_create_directory", "i32 i32 i32"),
    ("path_filestat_get", "i32 i32 i32 i32 i32"),
    ("path_filestat_set_times", "i32 i32 i32 i32 i64 i64 i32"),
    ("path_link", "i32 i32 i32 i32 i32 i32 i32"),
    ("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32"),
    ("path_readlink", "i32 i32 i32 i32 i32 i32"),
    ("path_remove_directory", "i32 i32 i32"),
    ("path_rename", "i32 i32 i32 i32 i32 i32"),
    ("path_symlink", "i32 i32 i32 i32 i32"),
    ("path_unlink_file", "i32 i32 i32"),
    ("poll_oneoff", "i32 i32 i32 i32"),
    ("proc_raise", "i32"),
    ("sched_yield", ""),
    ("random_get", "i32 i32"),
    ("sock_accept", "i32 i32 i32"),
    ("sock_recv", "i32 i32 i32 i32 i32 i32"),
    ("sock_send", "i32 i32 i32 i32 i32"),
    ("sock_shutdown", "i32 i32"),
];

fn wrapper_module() -> String {
    let mut wat = String::from("(module\n");
    for (name, params) in FUNCS {
        wat += &format!(
            "  (import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} (param {params}) (result i32)))\n"
        );
    }
    wat += "  (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $proc_exit (param i32)))\n";
    wat += "  (memory (export \"memory\") 1)\n";
    for (name, params) in FUNCS {
        let gets: String = (0..params.split_whitespace().count())
            .map(|i| format!("local.get {i} "))
            .collect();
        wat += &format!(
            "  (func (export \"{name}\") (param {params}) (result i32) {gets} call ${name})\n"
        );
    }
    wat += "  (func (export \"proc_exit\") (param i32) local.get 0 call $proc_exit)\n)";
    wat
}

struct State {
    wasi: WasiCtx,
}

/// Scratch addresses in the wrapper module's memory.
const OUT: u32 = 64; // results
const IOV: u32 = 128; // iovecs
const PATH: u32 = 1024; // first path
const PATH2: u32 = 2048; // second path
const DATA: u32 = 4096; // data buffers
const BIG: u32 = 8192;

/// The wrapper module instantiated in a store of its own.
struct Guest {
    store: Store<State>,
    instance: Instance,
}

fn i(v: i32) -> Val {
    Val::I32(v)
}
fn l(v: i64) -> Val {
    Val::I64(v)
}

impl Guest {
    fn new(ctx: WasiCtx) -> Guest {
        let engine = Engine::default();
        let module = Module::new(&engine, wrapper_module()).expect("wrapper module compiles");
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker, |s: &mut State| &mut s.wasi).unwrap();
        let mut store = Store::new(&engine, State { wasi: ctx });
        let instance = linker.instantiate(&mut store, &module).unwrap();
        Guest { store, instance }
    }

    fn call(&mut self, name: &str, args: &[Val]) -> i32 {
        match self
            .instance
            .call_dynamic(&mut self.store, name, args)
            .unwrap_or_else(|e| panic!("{name} must return an errno, not end the run: {e}"))[..]
        {
            [Val::I32(errno)] => errno,
            ref other => panic!("{name} returned {other:?}"),
        }
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) {
        let memory = self.instance.get_memory(&self.store, "memory").unwrap();
        memory.data_mut(&mut self.store)[ptr as usize..ptr as usize + bytes.len()]
            .copy_from_slice(bytes);
    }

    fn read(&self, ptr: u32, len: usize) -> Vec<u8> {
        let memory = self.instance.get_memory(&self.store, "memory").unwrap();
        memory.data(&self.store)[ptr as usize..ptr as usize + len].to_vec()
    }

    fn u32_at(&self, ptr: u32) -> u32 {
        u32::from_le_bytes(self.read(ptr, 4).try_into().unwrap())
    }

    fn u64_at(&self, ptr: u32) -> u64 {
        u64::from_le_bytes(self.read(ptr, 8).try_into().unwrap())
    }

    /// Puts `path` at `at` and returns the (ptr, len) arguments.
    fn path(&mut self, at: u32, path: &str) -> [Val; 2] {
        self.write(at, path.as_bytes());
        [i(at as i32), i(path.len() as i32)]
    }

    fn open(
        &mut self,
        dir: i32,
        path: &str,
        oflags: i32,
        rights: i64,
        fdflags: i32,
    ) -> Result<i32, i32> {
        let [p, n] = self.path(PATH, path);
        let errno = self.call(
            "path_open",
            &[
                i(dir),
                i(FOLLOW),
                p,
                n,
                i(oflags),
                l(rights),
                l(rights),
                i(fdflags),
                i(OUT as i32),
            ],
        );
        if errno == SUCCESS {
            Ok(self.u32_at(OUT) as i32)
        } else {
            Err(errno)
        }
    }

    fn fd_write(&mut self, fd: i32, data: &[u8]) -> Result<u32, i32> {
        self.write(DATA, data);
        self.write(IOV, &DATA.to_le_bytes());
        self.write(IOV + 4, &(data.len() as u32).to_le_bytes());
        match self.call("fd_write", &[i(fd), i(IOV as i32), i(1), i(OUT as i32)]) {
            SUCCESS => Ok(self.u32_at(OUT)),
            e => Err(e),
        }
    }

    fn fd_read(&mut self, fd: i32, len: u32) -> Result<Vec<u8>, i32> {
        self.write(IOV, &DATA.to_le_bytes());
        self.write(IOV + 4, &len.to_le_bytes());
        match self.call("fd_read", &[i(fd), i(IOV as i32), i(1), i(OUT as i32)]) {
            SUCCESS => {
                let n = self.u32_at(OUT) as usize;
                Ok(self.read(DATA, n))
            }
            e => Err(e),
        }
    }

    fn seek(&mut self, fd: i32, offset: i64, whence: i32) -> Result<u64, i32> {
        match self.call("fd_seek", &[i(fd), l(offset), i(whence), i(OUT as i32)]) {
            SUCCESS => Ok(self.u64_at(OUT)),
            e => Err(e),
        }
    }

    fn path_call(&mut self, name: &str, dir: i32, path: &str) -> i32 {
        let [p, n] = self.path(PATH, path);
        self.call(name, &[i(dir), p, n])
    }

    fn rename(&mut self, from: &str, to: &str) -> i32 {
        let [p1, n1] = self.path(PATH, from);
        let [p2, n2] = self.path(PATH2, to);
        self.call("path_rename", &[i(PREOPEN), p1, n1, i(PREOPEN), p2, n2])
    }

    fn link(&mut self, from: &str, to: &str) -> i32 {
        let [p1, n1] = self.path(PATH, from);
        let [p2, n2] = self.path(PATH2, to);
        self.call("path_link", &[i(PREOPEN), i(0), p1, n1, i(PREOPEN), p2, n2])
    }

    fn symlink(&mut self, target: &str, link: &str) -> i32 {
        let [p1, n1] = self.path(PATH, target);
        let [p2, n2] = self.path(PATH2, link);
        self.call("path_symlink", &[p1, n1, i(PREOPEN), p2, n2])
    }

    /// The names `fd_readdir` lists, read with a buffer of `buf_len` bytes,
    /// following cookies until the end.
    fn readdir(&mut self, fd: i32, buf_len: u32) -> Vec<String> {
        let mut names = Vec::new();
        let mut cookie = 0u64;
        loop {
            let errno = self.call(
                "fd_readdir",
                &[
                    i(fd),
                    i(BIG as i32),
                    i(buf_len as i32),
                    l(cookie as i64),
                    i(OUT as i32),
                ],
            );
            assert_eq!(errno, SUCCESS);
            let used = self.u32_at(OUT) as usize;
            let buf = self.read(BIG, used);
            let mut at = 0;
            let mut progressed = false;
            while at + 24 <= used {
                let next = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
                let namlen = u32::from_le_bytes(buf[at + 16..at + 20].try_into().unwrap()) as usize;
                if at + 24 + namlen > used {
                    break; // cut short: ask again from this entry
                }
                names.push(String::from_utf8(buf[at + 24..at + 24 + namlen].to_vec()).unwrap());
                cookie = next;
                progressed = true;
                at += 24 + namlen;
            }
            if used < buf_len as usize {
                break;
            }
            assert!(progressed, "buffer too small for one entry");
        }
        names
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "backstop-wasi-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sandboxed(dir: &Path) -> Guest {
    Guest::new(
        WasiCtxBuilder::new()
            .preopened_dir(dir, "/sandbox")
            .unwrap()
            .build(),
    )
}

#[test]
fn preopen_is_visible_as_fd_3() {
    let tmp = TempDir::new("prestat");
    let mut g = sandboxed(tmp.path());
    assert_eq!(g.call("fd_prestat_get", &[i(3), i(OUT as i32)]), SUCCESS);
    assert_eq!(g.read(OUT, 1)[0], 0, "preopen type dir");
    assert_eq!(g.u32_at(OUT + 4), 8);
    assert_eq!(
        g.call("fd_prestat_dir_name", &[i(3), i(DATA as i32), i(8)]),
        SUCCESS
    );
    assert_eq!(g.read(DATA, 8), b"/sandbox");
    // wasi-libc stops scanning preopens at the first EBADF.
    assert_eq!(g.call("fd_prestat_get", &[i(4), i(OUT as i32)]), BADF);
    assert_eq!(g.call("fd_prestat_get", &[i(1), i(OUT as i32)]), BADF);
    assert_eq!(
        g.call("fd_prestat_dir_name", &[i(3), i(DATA as i32), i(3)]),
        37
    ); // NAMETOOLONG
}

#[test]
fn file_lifecycle_in_preopened_dir() {
    let tmp = TempDir::new("lifecycle");
    let mut g = sandboxed(tmp.path());

    // Create and write.
    let fd = g
        .open(
            PREOPEN,
            "notes.txt",
            OFLAGS_CREAT | OFLAGS_EXCL,
            RIGHTS_ALL,
            0,
        )
        .unwrap();
    assert!(fd > 3);
    assert_eq!(g.fd_write(fd, b"hello, sandbox"), Ok(14));
    assert_eq!(
        std::fs::read(tmp.path().join("notes.txt")).unwrap(),
        b"hello, sandbox"
    );
    // O_EXCL on an existing file.
    assert_eq!(
        g.open(
            PREOPEN,
            "notes.txt",
            OFLAGS_CREAT | OFLAGS_EXCL,
            RIGHTS_ALL,
            0
        ),
        Err(EXIST)
    );

    // Tell, seek, read back.
    assert_eq!(g.call("fd_tell", &[i(fd), i(OUT as i32)]), SUCCESS);
    assert_eq!(g.u64_at(OUT), 14);
    assert_eq!(g.seek(fd, 7, 0), Ok(7));
    assert_eq!(g.fd_read(fd, 100).unwrap(), b"sandbox");
    assert_eq!(g.seek(fd, -7, 2), Ok(7));
    assert_eq!(g.seek(fd, -2, 1), Ok(5));
    assert_eq!(g.fd_read(fd, 2).unwrap(), b", ");
    assert_eq!(g.seek(fd, -100, 1), Err(INVAL));
    assert_eq!(g.seek(fd, 0, 9), Err(INVAL));

    // pwrite / pread leave the position alone.
    g.write(DATA, b"HELLO");
    g.write(IOV, &DATA.to_le_bytes());
    g.write(IOV + 4, &5u32.to_le_bytes());
    assert_eq!(
        g.call(
            "fd_pwrite",
            &[i(fd), i(IOV as i32), i(1), l(0), i(OUT as i32)]
        ),
        SUCCESS
    );
    g.write(IOV + 4, &14u32.to_le_bytes());
    assert_eq!(
        g.call(
            "fd_pread",
            &[i(fd), i(IOV as i32), i(1), l(0), i(OUT as i32)]
        ),
        SUCCESS
    );
    assert_eq!(g.u32_at(OUT), 14);
    assert_eq!(g.read(DATA, 14), b"HELLO, sandbox");
    assert_eq!(g.call("fd_tell", &[i(fd), i(OUT as i32)]), SUCCESS);
    assert_eq!(g.u64_at(OUT), 7);

    // Two iovecs in one write, and in one read.
    g.write(DATA, b"ab");
    g.write(DATA + 16, b"cd");
    g.write(
        IOV,
        &[
            DATA.to_le_bytes(),
            2u32.to_le_bytes(),
            (DATA + 16).to_le_bytes(),
            2u32.to_le_bytes(),
        ]
        .concat(),
    );
    assert_eq!(g.seek(fd, 0, 2), Ok(14));
    assert_eq!(
        g.call("fd_write", &[i(fd), i(IOV as i32), i(2), i(OUT as i32)]),
        SUCCESS
    );
    assert_eq!(g.u32_at(OUT), 4);
    assert_eq!(
        std::fs::read(tmp.path().join("notes.txt")).unwrap(),
        b"HELLO, sandboxabcd"
    );

    // Stat by descriptor and by path.
    assert_eq!(g.call("fd_filestat_get", &[i(fd), i(BIG as i32)]), SUCCESS);
    assert_eq!(g.read(BIG + 16, 1)[0], 4, "regular file");
    assert_eq!(g.u64_at(BIG + 32), 18, "size");
    let [p, n] = g.path(PATH, "notes.txt");
    assert_eq!(
        g.call(
            "path_filestat_get",
            &[i(PREOPEN), i(FOLLOW), p, n, i(BIG as i32)]
        ),
        SUCCESS
    );
    assert_eq!(g.u64_at(BIG + 32), 18);
    assert_eq!(g.call("fd_fdstat_get", &[i(fd), i(BIG as i32)]), SUCCESS);
    assert_eq!(g.read(BIG, 1)[0], 4);

    // Truncate, allocate, set times, sync.
    assert_eq!(g.call("fd_filestat_set_size", &[i(fd), l(5)]), SUCCESS);
    assert_eq!(
        std::fs::read(tmp.path().join("notes.txt")).unwrap(),
        b"HELLO"
    );
    assert_eq!(g.call("fd_allocate", &[i(fd), l(0), l(10)]), SUCCESS);
    assert_eq!(
        std::fs::metadata(tmp.path().join("notes.txt"))
            .unwrap()
            .len(),
        10
    );
    let mtime = 1_000_000_000u64 * 1_600_000_000;
    assert_eq!(
        g.call(
            "fd_filestat_set_times",
            &[i(fd), l(0), l(mtime as i64), i(4)]
        ),
        SUCCESS
    );
    assert_eq!(g.call("fd_filestat_get", &[i(fd), i(BIG as i32)]), SUCCESS);
    assert_eq!(g.u64_at(BIG + 48), mtime);
    assert_eq!(
        g.call("fd_filestat_set_times", &[i(fd), l(0), l(0), i(1 | 2)]),
        INVAL
    );
    assert_eq!(g.call("fd_sync", &[i(fd)]), SUCCESS);
    assert_eq!(g.call("fd_datasync", &[i(fd)]), SUCCESS);
    assert_eq!(g.call("fd_advise", &[i(fd), l(0), l(0), i(1)]), SUCCESS);
    assert_eq!(g.call("fd_advise", &[i(fd), l(0), l(0), i(99)]), INVAL);

    // Renumber, close.
    let fd2 = g.open(PREOPEN, "notes.txt", 0, RIGHTS_FD_READ, 0).unwrap();
    assert_eq!(g.call("fd_renumber", &[i(fd), i(fd2)]), SUCCESS);
    assert_eq!(g.call("fd_close", &[i(fd)]), BADF);
    assert_eq!(g.seek(fd2, 0, 0), Ok(0));
    assert_eq!(
        g.fd_write(fd2, b"J"),
        Ok(1),
        "fd2 is now the read-write descriptor"
    );
    assert_eq!(g.call("fd_close", &[i(fd2)]), SUCCESS);
    assert_eq!(g.call("fd_close", &[i(fd2)]), BADF);

    // Rename, mkdir, readdir.
    assert_eq!(g.rename("notes.txt", "renamed.txt"), SUCCESS);
    assert!(tmp.path().join("renamed.txt").exists());
    assert!(!tmp.path().join("notes.txt").exists());
    assert_eq!(
        g.path_call("path_create_directory", PREOPEN, "sub"),
        SUCCESS
    );
    assert_eq!(g.path_call("path_create_directory", PREOPEN, "sub"), EXIST);
    for n in 0..20 {
        let f = g
            .open(
                PREOPEN,
                &format!("sub/file-{n:02}"),
                OFLAGS_CREAT,
                RIGHTS_ALL,
                0,
            )
            .unwrap();
        assert_eq!(g.call("fd_close", &[i(f)]), SUCCESS);
    }
    let mut expected: Vec<String> =
        vec![".".into(), "..".into(), "renamed.txt".into(), "sub".into()];
    assert_eq!(g.readdir(PREOPEN, 4096), expected);
    let sub = g
        .open(PREOPEN, "sub", OFLAGS_DIRECTORY, RIGHTS_ALL, 0)
        .unwrap();
    expected = vec![".".into(), "..".into()];
    expected.extend((0..20).map(|n| format!("file-{n:02}")));
    // A small buffer forces several calls and cut-short entries.
    assert_eq!(g.readdir(sub, 64), expected);
    assert_eq!(g.readdir(sub, 4096), expected);
    assert_eq!(
        g.call(
            "fd_readdir",
            &[i(1), i(BIG as i32), i(100), l(0), i(OUT as i32)]
        ),
        54
    ); // NOTDIR

    // Opening a directory for writing, and reading a directory.
    assert_eq!(g.open(PREOPEN, "sub", 0, RIGHTS_FD_WRITE, 0), Err(ISDIR));
    assert_eq!(g.fd_read(sub, 10), Err(NOTCAPABLE));

    // Symlink and readlink inside the sandbox.
    assert_eq!(g.symlink("renamed.txt", "alias"), SUCCESS);
    let [p, n] = g.path(PATH, "alias");
    assert_eq!(
        g.call(
            "path_readlink",
            &[i(PREOPEN), p, n, i(DATA as i32), i(100), i(OUT as i32)]
        ),
        SUCCESS
    );
    assert_eq!(g.read(DATA, g.u32_at(OUT) as usize), b"renamed.txt");
    let via_link = g.open(PREOPEN, "alias", 0, RIGHTS_FD_READ, 0).unwrap();
    assert_eq!(g.fd_read(via_link, 5).unwrap(), b"JELLO");
    // Without SYMLINK_FOLLOW the link itself is not opened.
    let [p, n] = g.path(PATH, "alias");
    let errno = g.call(
        "path_open",
        &[
            i(PREOPEN),
            i(0),
            p,
            n,
            i(0),
            l(RIGHTS_FD_READ),
            l(0),
            i(0),
            i(OUT as i32),
        ],
    );
    assert_eq!(errno, 32, "ELOOP");

    // Hard link inside the sandbox.
    assert_eq!(g.link("renamed.txt", "hard.txt"), SUCCESS);
    assert_eq!(
        std::fs::read(tmp.path().join("hard.txt")).unwrap()[..5],
        *b"JELLO"
    );

    // Unlink and rmdir.
    assert_eq!(
        g.path_call("path_remove_directory", PREOPEN, "sub"),
        NOTEMPTY
    );
    for n in 0..20 {
        assert_eq!(
            g.path_call("path_unlink_file", PREOPEN, &format!("sub/file-{n:02}")),
            SUCCESS
        );
    }
    assert_eq!(
        g.path_call("path_remove_directory", PREOPEN, "sub"),
        SUCCESS
    );
    assert_eq!(g.path_call("path_unlink_file", PREOPEN, "alias"), SUCCESS);
    assert!(
        tmp.path().join("renamed.txt").exists(),
        "unlinking a symlink keeps its target"
    );
    assert_eq!(
        g.path_call("path_unlink_file", PREOPEN, "renamed.txt"),
        SUCCESS
    );
    assert_eq!(
        g.path_call("path_unlink_file", PREOPEN, "renamed.txt"),
        NOENT
    );
    assert_eq!(g.open(PREOPEN, "missing", 0, RIGHTS_ALL, 0), Err(NOENT));
    // O_TRUNC empties an existing file.
    let f = g
        .open(PREOPEN, "hard.txt", OFLAGS_TRUNC, RIGHTS_ALL, 0)
        .unwrap();
    assert_eq!(g.call("fd_close", &[i(f)]), SUCCESS);
    assert_eq!(
        std::fs::metadata(tmp.path().join("hard.txt"))
            .unwrap()
            .len(),
        0
    );
}

/// Layout for the escape tests: `base/sandbox` is preopened, and
/// `base/outside` holds a secret the guest must not reach.
struct Escape {
    _base: TempDir,
    sandbox: PathBuf,
    outside: PathBuf,
}

impl Escape {
    fn new(name: &str) -> Escape {
        let base = TempDir::new(name);
        let sandbox = base.path().join("sandbox");
        let outside = base.path().join("outside");
        std::fs::create_dir(&sandbox).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), b"secret").unwrap();
        std::fs::write(sandbox.join("inside.txt"), b"inside").unwrap();
        Escape {
            _base: base,
            sandbox,
            outside,
        }
    }

    /// The outside directory holds exactly the secret, unchanged.
    fn assert_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret.txt"]);
        assert_eq!(
            std::fs::read(self.outside.join("secret.txt")).unwrap(),
            b"secret"
        );
    }
}

#[test]
fn dotdot_cannot_escape() {
    let e = Escape::new("dotdot");
    let mut g = sandboxed(&e.sandbox);
    assert_eq!(
        g.open(PREOPEN, "../outside/secret.txt", 0, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    std::fs::create_dir(e.sandbox.join("sub")).unwrap();
    assert_eq!(
        g.open(PREOPEN, "sub/../../outside/secret.txt", 0, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.open(PREOPEN, "../outside/new.txt", OFLAGS_CREAT, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.open(PREOPEN, "..", OFLAGS_DIRECTORY, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.path_call("path_create_directory", PREOPEN, "../outside/dir"),
        NOTCAPABLE
    );
    assert_eq!(
        g.path_call("path_unlink_file", PREOPEN, "../outside/secret.txt"),
        NOTCAPABLE
    );
    assert_eq!(
        g.path_call("path_remove_directory", PREOPEN, "../outside"),
        NOTCAPABLE
    );
    let [p, n] = g.path(PATH, "../outside/secret.txt");
    assert_eq!(
        g.call(
            "path_filestat_get",
            &[i(PREOPEN), i(FOLLOW), p, n, i(BIG as i32)]
        ),
        NOTCAPABLE
    );
    // `..` that stays inside is fine.
    let fd = g
        .open(PREOPEN, "sub/../inside.txt", 0, RIGHTS_FD_READ, 0)
        .unwrap();
    assert_eq!(g.fd_read(fd, 10).unwrap(), b"inside");
    e.assert_untouched();
}

#[test]
fn absolute_paths_cannot_escape() {
    let e = Escape::new("absolute");
    let mut g = sandboxed(&e.sandbox);
    let secret = e.outside.join("secret.txt").display().to_string();
    assert_eq!(g.open(PREOPEN, &secret, 0, RIGHTS_ALL, 0), Err(NOTCAPABLE));
    let new = e.outside.join("new.txt").display().to_string();
    assert_eq!(
        g.open(PREOPEN, &new, OFLAGS_CREAT, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.open(PREOPEN, "/etc/passwd", 0, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    let inside = e.sandbox.join("inside.txt").display().to_string();
    assert_eq!(
        g.open(PREOPEN, &inside, 0, RIGHTS_ALL, 0),
        Err(NOTCAPABLE),
        "even to itself"
    );
    assert_eq!(
        g.path_call("path_unlink_file", PREOPEN, &secret),
        NOTCAPABLE
    );
    e.assert_untouched();
}

#[test]
fn symlinks_cannot_escape() {
    let e = Escape::new("symlink");
    // Planted by the host: an absolute and a relative link to the outside.
    std::os::unix::fs::symlink(&e.outside, e.sandbox.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../outside", e.sandbox.join("rel-link")).unwrap();
    std::os::unix::fs::symlink(e.outside.join("secret.txt"), e.sandbox.join("file-link")).unwrap();
    let mut g = sandboxed(&e.sandbox);
    for path in ["abs-link/secret.txt", "rel-link/secret.txt", "file-link"] {
        assert_eq!(
            g.open(PREOPEN, path, 0, RIGHTS_ALL, 0),
            Err(NOTCAPABLE),
            "{path}"
        );
    }
    assert_eq!(
        g.open(PREOPEN, "rel-link/new.txt", OFLAGS_CREAT, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.open(PREOPEN, "abs-link", OFLAGS_DIRECTORY, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.path_call("path_create_directory", PREOPEN, "rel-link/d"),
        NOTCAPABLE
    );
    assert_eq!(
        g.path_call("path_unlink_file", PREOPEN, "rel-link/secret.txt"),
        NOTCAPABLE
    );
    assert_eq!(g.rename("inside.txt", "rel-link/moved.txt"), NOTCAPABLE);
    // A link the guest makes itself is no way out either (making it may be
    // refused or allowed; following it never is).
    let outside = e.outside.display().to_string();
    for (target, link) in [("../outside", "mine"), (outside.as_str(), "mine-abs")] {
        let made = g.symlink(target, link);
        eprintln!("path_symlink({target:?}, {link:?}) = {made}");
        let open = g.open(PREOPEN, &format!("{link}/secret.txt"), 0, RIGHTS_ALL, 0);
        if made == SUCCESS {
            assert_eq!(open, Err(NOTCAPABLE));
        } else {
            assert!(made == NOTCAPABLE || made == 63, "symlink: {made}");
            assert_eq!(open, Err(NOENT));
        }
    }
    // Stat through a link out fails; stat of the link itself is fine.
    let [p, n] = g.path(PATH, "file-link");
    assert_eq!(
        g.call(
            "path_filestat_get",
            &[i(PREOPEN), i(FOLLOW), p.clone(), n.clone(), i(BIG as i32)]
        ),
        NOTCAPABLE
    );
    assert_eq!(
        g.call(
            "path_filestat_get",
            &[i(PREOPEN), i(0), p, n, i(BIG as i32)]
        ),
        SUCCESS
    );
    assert_eq!(g.read(BIG + 16, 1)[0], 7, "symbolic link");
    e.assert_untouched();
}

#[test]
fn hard_links_cannot_escape() {
    let e = Escape::new("hardlink");
    let mut g = sandboxed(&e.sandbox);
    assert_eq!(g.link("inside.txt", "../outside/linked.txt"), NOTCAPABLE);
    assert_eq!(g.link("../outside/secret.txt", "stolen.txt"), NOTCAPABLE);
    let secret = e.outside.join("secret.txt").display().to_string();
    assert_eq!(g.link(&secret, "stolen2.txt"), NOTCAPABLE);
    assert!(!e.sandbox.join("stolen.txt").exists());
    assert!(!e.sandbox.join("stolen2.txt").exists());
    // Through a planted symlink to the outside.
    std::os::unix::fs::symlink(&e.outside, e.sandbox.join("out")).unwrap();
    assert_eq!(g.link("out/secret.txt", "stolen3.txt"), NOTCAPABLE);
    assert_eq!(g.link("inside.txt", "out/linked.txt"), NOTCAPABLE);
    e.assert_untouched();
}

#[test]
fn renames_cannot_escape() {
    let e = Escape::new("rename");
    let mut g = sandboxed(&e.sandbox);
    assert_eq!(g.rename("inside.txt", "../outside/moved.txt"), NOTCAPABLE);
    assert_eq!(
        g.rename("../outside/secret.txt", "moved-in.txt"),
        NOTCAPABLE
    );
    let abs = e.outside.join("moved.txt").display().to_string();
    assert_eq!(g.rename("inside.txt", &abs), NOTCAPABLE);
    assert!(e.sandbox.join("inside.txt").exists());
    assert!(!e.sandbox.join("moved-in.txt").exists());
    e.assert_untouched();
}

#[test]
fn rights_are_enforced() {
    let tmp = TempDir::new("rights");
    std::fs::write(tmp.path().join("data.txt"), b"read me").unwrap();
    let mut g = sandboxed(tmp.path());

    // A descriptor opened for reading only cannot write.
    let ro = g.open(PREOPEN, "data.txt", 0, RIGHTS_FD_READ, 0).unwrap();
    assert_eq!(g.fd_write(ro, b"x"), Err(NOTCAPABLE));
    assert_eq!(g.call("fd_filestat_set_size", &[i(ro), l(0)]), NOTCAPABLE);
    assert_eq!(g.fd_read(ro, 100).unwrap(), b"read me");
    // ... nor seek without the seek right.
    assert_eq!(g.seek(ro, 0, 0), Err(NOTCAPABLE));
    // Write-only cannot read.
    let wo = g.open(PREOPEN, "data.txt", 0, RIGHTS_FD_WRITE, 0).unwrap();
    assert_eq!(g.fd_read(wo, 10), Err(NOTCAPABLE));
    assert_eq!(g.fd_write(wo, b"R"), Ok(1));
    assert_eq!(
        std::fs::read(tmp.path().join("data.txt")).unwrap(),
        b"Read me"
    );

    // Rights can be dropped, never gained back.
    let rw = g.open(PREOPEN, "data.txt", 0, RIGHTS_ALL, 0).unwrap();
    assert_eq!(
        g.call("fd_fdstat_set_rights", &[i(rw), l(RIGHTS_FD_READ), l(0)]),
        SUCCESS
    );
    assert_eq!(g.fd_write(rw, b"x"), Err(NOTCAPABLE));
    assert_eq!(
        g.call("fd_fdstat_set_rights", &[i(rw), l(RIGHTS_ALL), l(0)]),
        NOTCAPABLE
    );
    assert_eq!(g.call("fd_fdstat_get", &[i(rw), i(BIG as i32)]), SUCCESS);
    assert_eq!(g.u64_at(BIG + 8), RIGHTS_FD_READ as u64);

    // stdin cannot be written, stdout cannot be read or seeked.
    assert_eq!(g.fd_write(0, b"x"), Err(NOTCAPABLE));
    assert_eq!(g.fd_read(1, 1), Err(NOTCAPABLE));
    assert_eq!(g.seek(1, 0, 0), Err(SPIPE));
    // A directory cannot be written to.
    assert_eq!(g.fd_write(PREOPEN, b"x"), Err(NOTCAPABLE));

    // Append mode: writes go to the end whatever the position.
    let ap = g
        .open(PREOPEN, "log.txt", OFLAGS_CREAT, RIGHTS_ALL, 1)
        .unwrap();
    assert_eq!(g.fd_write(ap, b"one "), Ok(4));
    assert_eq!(g.seek(ap, 0, 0), Ok(0));
    assert_eq!(g.fd_write(ap, b"two"), Ok(3));
    assert_eq!(
        std::fs::read(tmp.path().join("log.txt")).unwrap(),
        b"one two"
    );
    assert_eq!(g.call("fd_fdstat_get", &[i(ap), i(BIG as i32)]), SUCCESS);
    assert_eq!(g.read(BIG + 2, 2), [1, 0], "fdflags APPEND");
    assert_eq!(g.call("fd_fdstat_set_flags", &[i(ap), i(0)]), SUCCESS);
    assert_eq!(g.seek(ap, 0, 0), Ok(0));
    assert_eq!(g.fd_write(ap, b"ONE"), Ok(3));
    assert_eq!(
        std::fs::read(tmp.path().join("log.txt")).unwrap(),
        b"ONE two"
    );
    assert_eq!(
        g.call("fd_fdstat_set_flags", &[i(ap), i(16)]),
        NOTSUP,
        "SYNC cannot change"
    );
    assert_eq!(g.call("fd_fdstat_set_flags", &[i(ap), i(1 << 9)]), INVAL);
}

#[test]
fn read_only_preopen() {
    let tmp = TempDir::new("readonly");
    std::fs::write(tmp.path().join("data.txt"), b"keep").unwrap();
    let mut g = Guest::new(
        WasiCtxBuilder::new()
            .preopened_dir_read_only(tmp.path(), "/ro")
            .unwrap()
            .build(),
    );
    let fd = g.open(PREOPEN, "data.txt", 0, RIGHTS_FD_READ, 0).unwrap();
    assert_eq!(g.fd_read(fd, 10).unwrap(), b"keep");
    // Write access the directory cannot give fails the open ...
    assert_eq!(
        g.open(PREOPEN, "data.txt", 0, RIGHTS_ALL, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.open(PREOPEN, "data.txt", 0, RIGHTS_FD_READ | RIGHTS_FD_WRITE, 0),
        Err(NOTCAPABLE)
    );
    // ... but other rights it cannot give are left out, not refused: what
    // Rust's std asks for to read a file (`OpenOptions::rights_base` with
    // `read(true)`), including fd_filestat_set_times and fd_sync.
    let fd = g
        .open(PREOPEN, "data.txt", 0, RUST_STD_READ_RIGHTS, 0)
        .unwrap();
    assert_eq!(g.fd_read(fd, 10).unwrap(), b"keep");
    assert_eq!(g.call("fd_fdstat_get", &[i(fd), i(BIG as i32)]), SUCCESS);
    let granted = g.u64_at(BIG + 8) as i64;
    assert_eq!(granted & RIGHTS_FD_READ, RIGHTS_FD_READ);
    assert_eq!(granted & RIGHTS_FD_SEEK, RIGHTS_FD_SEEK);
    assert_eq!(granted & (RIGHTS_FD_FILESTAT_SET_TIMES | RIGHTS_FD_SYNC), 0);
    assert_eq!(granted & !RUST_STD_READ_RIGHTS, 0, "never more than asked");
    // What was left out is refused when used.
    assert_eq!(
        g.call("fd_filestat_set_times", &[i(fd), l(0), l(0), i(1 << 1)]),
        NOTCAPABLE
    );
    assert_eq!(g.call("fd_sync", &[i(fd)]), NOTCAPABLE);
    assert_eq!(g.fd_write(fd, b"x"), Err(NOTCAPABLE));
    assert_eq!(
        g.open(PREOPEN, "new.txt", OFLAGS_CREAT, RIGHTS_FD_READ, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.open(PREOPEN, "data.txt", OFLAGS_TRUNC, RIGHTS_FD_READ, 0),
        Err(NOTCAPABLE)
    );
    assert_eq!(
        g.path_call("path_unlink_file", PREOPEN, "data.txt"),
        NOTCAPABLE
    );
    assert_eq!(
        g.path_call("path_create_directory", PREOPEN, "d"),
        NOTCAPABLE
    );
    assert_eq!(g.rename("data.txt", "moved.txt"), NOTCAPABLE);
    assert_eq!(std::fs::read(tmp.path().join("data.txt")).unwrap(), b"keep");
    assert!(!tmp.path().join("new.txt").exists());
}

#[test]
fn bad_pointers_give_efault_not_a_trap() {
    let tmp = TempDir::new("efault");
    let stdout = WritePipe::new();
    let mut g = Guest::new(
        WasiCtxBuilder::new()
            .args(["prog", "arg"])
            .stdout(stdout.clone())
            .preopened_dir(tmp.path(), "/sandbox")
            .unwrap()
            .build(),
    );
    let end = 65536; // one page
                     // The iovec array itself out of bounds, or straddling the end.
    assert_eq!(
        g.call("fd_write", &[i(1), i(-16), i(1), i(OUT as i32)]),
        FAULT
    );
    assert_eq!(
        g.call("fd_write", &[i(1), i(end - 4), i(1), i(OUT as i32)]),
        FAULT
    );
    assert_eq!(
        g.call(
            "fd_write",
            &[i(1), i(IOV as i32), i(0x2000_0000), i(OUT as i32)]
        ),
        FAULT
    );
    // An iovec whose buffer is out of bounds.
    g.write(
        IOV,
        &[(end as u32 - 2).to_le_bytes(), 4u32.to_le_bytes()].concat(),
    );
    assert_eq!(
        g.call("fd_write", &[i(1), i(IOV as i32), i(1), i(OUT as i32)]),
        FAULT
    );
    g.write(IOV, &[0u32.to_le_bytes(), u32::MAX.to_le_bytes()].concat());
    assert_eq!(
        g.call("fd_read", &[i(0), i(IOV as i32), i(1), i(OUT as i32)]),
        FAULT
    );
    // The result pointer out of bounds: nothing is written at all.
    g.write(DATA, b"hi");
    g.write(IOV, &[DATA.to_le_bytes(), 2u32.to_le_bytes()].concat());
    assert_eq!(
        g.call("fd_write", &[i(1), i(IOV as i32), i(1), i(end)]),
        FAULT
    );
    assert!(stdout.contents().is_empty());
    // Other calls.
    assert_eq!(g.call("args_get", &[i(end - 4), i(DATA as i32)]), FAULT);
    assert_eq!(g.call("args_get", &[i(OUT as i32), i(end - 3)]), FAULT);
    assert_eq!(g.call("args_sizes_get", &[i(-1), i(OUT as i32)]), FAULT);
    assert_eq!(g.call("environ_sizes_get", &[i(OUT as i32), i(end)]), FAULT);
    assert_eq!(g.call("clock_time_get", &[i(0), l(0), i(end - 7)]), FAULT);
    assert_eq!(g.call("random_get", &[i(end - 10), i(11)]), FAULT);
    assert_eq!(g.call("random_get", &[i(0), i(-1)]), FAULT);
    assert_eq!(
        g.call("fd_prestat_dir_name", &[i(3), i(end - 2), i(8)]),
        FAULT
    );
    assert_eq!(g.call("fd_filestat_get", &[i(1), i(end - 63)]), FAULT);
    assert_eq!(
        g.call(
            "poll_oneoff",
            &[i(end - 40), i(OUT as i32), i(1), i(OUT as i32)]
        ),
        FAULT
    );
    assert_eq!(
        g.call(
            "fd_readdir",
            &[i(3), i(end - 10), i(100), l(0), i(OUT as i32)]
        ),
        FAULT
    );
    let errno = g.call(
        "path_open",
        &[
            i(3),
            i(0),
            i(end - 2),
            i(10),
            i(OFLAGS_CREAT),
            l(RIGHTS_ALL),
            l(0),
            i(0),
            i(OUT as i32),
        ],
    );
    assert_eq!(errno, FAULT);
    let [p, n] = g.path(PATH, "created.txt");
    let errno = g.call(
        "path_open",
        &[
            i(3),
            i(0),
            p,
            n,
            i(OFLAGS_CREAT),
            l(RIGHTS_ALL),
            l(0),
            i(0),
            i(end),
        ],
    );
    assert_eq!(errno, FAULT);
    assert!(
        !tmp.path().join("created.txt").exists(),
        "no side effect before EFAULT"
    );
    // A path with a NUL inside.
    g.write(PATH, b"a\0b");
    assert_eq!(
        g.call("path_create_directory", &[i(3), i(PATH as i32), i(3)]),
        25
    ); // ILSEQ
       // The store still works afterwards.
    assert_eq!(g.fd_write(1, b"ok"), Ok(2));
    assert_eq!(stdout.contents(), b"ok");
}

#[test]
fn clocks() {
    let mut g = Guest::new(WasiCtx::new());
    for clock in 0..4 {
        assert_eq!(g.call("clock_res_get", &[i(clock), i(OUT as i32)]), SUCCESS);
        assert!(g.u64_at(OUT) >= 1 && g.u64_at(OUT) <= 1_000_000_000);
        assert_eq!(
            g.call("clock_time_get", &[i(clock), l(1), i(OUT as i32)]),
            SUCCESS
        );
    }
    assert_eq!(
        g.call("clock_time_get", &[i(4), l(1), i(OUT as i32)]),
        INVAL
    );
    assert_eq!(g.call("clock_res_get", &[i(-1), i(OUT as i32)]), INVAL);

    assert_eq!(
        g.call("clock_time_get", &[i(1), l(1), i(OUT as i32)]),
        SUCCESS
    );
    let t1 = g.u64_at(OUT);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(
        g.call("clock_time_get", &[i(1), l(1), i(OUT as i32)]),
        SUCCESS
    );
    let t2 = g.u64_at(OUT);
    assert!(t2 >= t1 + 5_000_000, "monotonic advanced: {t1} -> {t2}");

    assert_eq!(
        g.call("clock_time_get", &[i(0), l(1), i(OUT as i32)]),
        SUCCESS
    );
    let realtime = g.u64_at(OUT);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        realtime.abs_diff(now) < 5_000_000_000,
        "realtime {realtime} vs {now}"
    );
}

#[test]
fn random_get_fills_buffers() {
    let mut g = Guest::new(WasiCtx::new());
    assert_eq!(g.call("random_get", &[i(DATA as i32), i(64)]), SUCCESS);
    assert_eq!(g.call("random_get", &[i(BIG as i32), i(64)]), SUCCESS);
    let (a, b) = (g.read(DATA, 64), g.read(BIG, 64));
    assert_ne!(a, vec![0; 64]);
    assert_ne!(a, b);
    // Large requests work too (chunked on the host).
    assert_eq!(g.call("random_get", &[i(0), i(65536)]), SUCCESS);
    assert_eq!(g.call("random_get", &[i(0), i(0)]), SUCCESS);
}

/// A subscription record (48 bytes).
fn subscription(userdata: u64, tag: u8, a: u32, timeout: u64, flags: u16) -> Vec<u8> {
    let mut s = vec![0u8; 48];
    s[0..8].copy_from_slice(&userdata.to_le_bytes());
    s[8] = tag;
    s[16..20].copy_from_slice(&a.to_le_bytes());
    s[24..32].copy_from_slice(&timeout.to_le_bytes());
    s[40..42].copy_from_slice(&flags.to_le_bytes());
    s
}

#[test]
fn poll_oneoff_clock_subscriptions() {
    let mut g = Guest::new(WasiCtxBuilder::new().stdin("input").build());
    // One relative 30 ms timeout on the monotonic clock.
    g.write(DATA, &subscription(0xfeed, 0, 1, 30_000_000, 0));
    let start = Instant::now();
    assert_eq!(
        g.call(
            "poll_oneoff",
            &[i(DATA as i32), i(BIG as i32), i(1), i(OUT as i32)]
        ),
        SUCCESS
    );
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(30), "slept {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5));
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.u64_at(BIG), 0xfeed);
    assert_eq!(g.read(BIG + 8, 3), [0, 0, 0], "no error, clock event");

    // Two clocks: only the earlier fires.
    let subs = [
        subscription(1, 0, 1, 10_000_000, 0),
        subscription(2, 0, 1, 10_000_000_000, 0),
    ]
    .concat();
    g.write(DATA, &subs);
    let start = Instant::now();
    assert_eq!(
        g.call(
            "poll_oneoff",
            &[i(DATA as i32), i(BIG as i32), i(2), i(OUT as i32)]
        ),
        SUCCESS
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.u64_at(BIG), 1);

    // An absolute deadline already passed returns at once.
    g.write(DATA, &subscription(3, 0, 0, 1, 1));
    assert_eq!(
        g.call(
            "poll_oneoff",
            &[i(DATA as i32), i(BIG as i32), i(1), i(OUT as i32)]
        ),
        SUCCESS
    );
    assert_eq!((g.u32_at(OUT), g.u64_at(BIG)), (1, 3));

    // A readable stdin pipe is ready at once, alongside a long clock.
    let subs = [
        subscription(4, 0, 1, 10_000_000_000, 0),
        subscription(5, 1, 0, 0, 0),
        subscription(6, 2, 1, 0, 0),
    ]
    .concat();
    g.write(DATA, &subs);
    let start = Instant::now();
    assert_eq!(
        g.call(
            "poll_oneoff",
            &[i(DATA as i32), i(BIG as i32), i(3), i(OUT as i32)]
        ),
        SUCCESS
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(g.u32_at(OUT), 2);
    assert_eq!(g.u64_at(BIG), 5);
    assert_eq!(g.read(BIG + 10, 1)[0], 1, "fd_read event");
    assert_eq!(g.u64_at(BIG + 16), 5, "bytes available");
    assert_eq!(g.u64_at(BIG + 32), 6);
    assert_eq!(g.read(BIG + 42, 1)[0], 2, "fd_write event");

    // A bad descriptor is an event with an error, not a failed call.
    g.write(DATA, &subscription(7, 1, 99, 0, 0));
    assert_eq!(
        g.call(
            "poll_oneoff",
            &[i(DATA as i32), i(BIG as i32), i(1), i(OUT as i32)]
        ),
        SUCCESS
    );
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(
        u16::from_le_bytes(g.read(BIG + 8, 2).try_into().unwrap()),
        BADF as u16
    );

    // No subscriptions at all.
    assert_eq!(
        g.call(
            "poll_oneoff",
            &[i(DATA as i32), i(BIG as i32), i(0), i(OUT as i32)]
        ),
        INVAL
    );
}

#[test]
fn unsupported_calls_return_errnos() {
    let mut g = Guest::new(WasiCtx::new());
    assert_eq!(g.call("sched_yield", &[]), SUCCESS);
    assert_eq!(g.call("proc_raise", &[i(6)]), NOTSUP);
    assert_eq!(g.call("sock_accept", &[i(0), i(0), i(OUT as i32)]), NOTSOCK);
    assert_eq!(g.call("sock_accept", &[i(42), i(0), i(OUT as i32)]), BADF);
    assert_eq!(
        g.call(
            "sock_recv",
            &[
                i(1),
                i(IOV as i32),
                i(1),
                i(0),
                i(OUT as i32),
                i(OUT as i32)
            ]
        ),
        NOTSOCK
    );
    assert_eq!(
        g.call(
            "sock_send",
            &[i(1), i(IOV as i32), i(1), i(0), i(OUT as i32)]
        ),
        NOTSOCK
    );
    assert_eq!(g.call("sock_shutdown", &[i(2), i(3)]), NOTSOCK);
    // No preopens: fd 3 does not exist.
    assert_eq!(g.call("fd_prestat_get", &[i(3), i(OUT as i32)]), BADF);
    assert_eq!(g.call("fd_close", &[i(3)]), BADF);
    assert_eq!(g.call("fd_renumber", &[i(1), i(7)]), BADF);
}

#[test]
fn proc_exit_from_a_wrapper_ends_the_run() {
    let mut g = Guest::new(WasiCtx::new());
    let err = g
        .instance
        .call::<i32, ()>(&mut g.store, "proc_exit", 7)
        .unwrap_err();
    assert_eq!(wasi::ExitCode::from_error(err).unwrap(), wasi::ExitCode(7));
}
