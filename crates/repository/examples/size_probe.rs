//! Measures how small blobs compress: each alone (zstd level 3, as a blob today), with the
//! frame's optional fields off, and with a dictionary trained on a sample. A measuring tool
//! for issue 16 (`cargo run --release -p coffer-repository --example size_probe -- DIR [EVERY]`).
#![allow(clippy::print_stdout, clippy::disallowed_macros)]

use std::path::Path;

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut es: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    es.sort();
    for p in es {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let every: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let mut files = Vec::new();
    walk(Path::new(&args[1]), &mut files);
    let data: Vec<Vec<u8>> =
        files.iter().step_by(every).map(|p| std::fs::read(p).unwrap()).filter(|d| d.len() < 512 << 10).collect();
    let raw: usize = data.iter().map(Vec::len).sum();
    println!("files {} raw {}", data.len(), raw);
    for level in [3, 9, 19] {
        let mut c = zstd::bulk::Compressor::new(level).unwrap();
        let n: usize = data.iter().map(|d| c.compress(d).unwrap().len()).sum();
        println!("alone L{level}: {n} ({:.3})", n as f64 / raw as f64);
    }
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false)).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(false)).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false)).unwrap();
    let n: usize = data.iter().map(|d| c.compress(d).unwrap().len()).sum();
    let n = n - 4 * data.len();
    println!("alone L3 no-size minus magic: {n} ({:.3})", n as f64 / raw as f64);
    // Train on every 8th of the sample (the rest is unseen data).
    let train: Vec<&[u8]> = data.iter().step_by(8).map(Vec::as_slice).take(20000).collect();
    for dsize in [32 << 10, 64 << 10, 110 << 10, 256 << 10] {
        let t = std::time::Instant::now();
        let dict = zstd::dict::from_samples(&train, dsize).unwrap();
        let tt = t.elapsed();
        for level in [3, 9] {
            let ed = zstd::dict::EncoderDictionary::copy(&dict, level);
            let mut c = zstd::bulk::Compressor::with_prepared_dictionary(&ed).unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false)).unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false)).unwrap();
            let t = std::time::Instant::now();
            let n: usize =
                data.iter().enumerate().filter(|(i, _)| i % 8 != 0).map(|(_, d)| c.compress(d).unwrap().len()).sum();
            let rawu: usize = data.iter().enumerate().filter(|(i, _)| i % 8 != 0).map(|(_, d)| d.len()).sum();
            println!(
                "dict {} L{level} (train {:?} on {} samples, compress {:?}): {n} of {rawu} ({:.3})",
                dict.len(),
                tt,
                train.len(),
                t.elapsed(),
                n as f64 / rawu as f64
            );
        }
    }
}
