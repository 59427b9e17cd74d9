//! Reads files the way Rust programs do, with the standard library, from a
//! directory the runtime may have preopened read-only: `File::open` asks
//! `path_open` for rights such as `fd_filestat_set_times` and `fd_sync`
//! even to read. Usage: `readfile DIR [create]`: prints each regular
//! file's name, size and contents (sorted by name); with `create`, then
//! tries to create a file there and says whether that worked.
use std::fs;
use std::io::{Read, Write};

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".to_string());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("read_dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let path = format!("{dir}/{name}");
        if !fs::metadata(&path).expect("metadata").is_file() {
            continue;
        }
        let mut text = String::new();
        fs::File::open(&path)
            .expect("open")
            .read_to_string(&mut text)
            .expect("read");
        println!("{name} ({} bytes): {}", text.len(), text.trim_end());
    }
    if std::env::args().nth(2).as_deref() != Some("create") {
        return;
    }
    // A read-only directory must refuse this; a writable one must allow it.
    let created = fs::File::create(format!("{dir}/created.txt"))
        .and_then(|mut file| file.write_all(b"written\n"));
    match created {
        Ok(()) => println!("create: ok"),
        Err(e) => println!("create: refused ({e})"),
    }
}
