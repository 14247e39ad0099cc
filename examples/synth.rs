//! Writes deterministic synthetic images as an OCI layout: the workload of the demo and the
//! benchmark (the same generator the tests use).
//!
//! usage: synth OUT_DIR [--images N] [--layers K] [--layer-kib M] [--names a:v1,b:v1] [--multiarch]
//! Every image shares one base layer and has K own layers of incompressible data.

#[path = "../tests/common/synth.rs"]
mod synth;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: synth OUT_DIR [options]");
    let (mut images, mut layers, mut layer_kib, mut names, mut multiarch) =
        (4usize, 3usize, 1024usize, Vec::new(), false);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--images" => images = val().parse().expect("--images N"),
            "--layers" => layers = val().parse().expect("--layers K"),
            "--layer-kib" => layer_kib = val().parse().expect("--layer-kib M"),
            "--names" => names = val().split(',').map(str::to_string).collect(),
            "--multiarch" => multiarch = true,
            other => panic!("unknown option {other}"),
        }
    }
    if names.is_empty() {
        names = (0..images).map(|i| format!("img-{i}:v1")).collect();
    }
    let specs: Vec<synth::ImageSpec> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut s = synth::ImageSpec::new(n, i as u64 + 1);
            s.layers = layers.saturating_sub(1).max(1);
            s.layer_size = layer_kib * 1024;
            s.multiarch = multiarch;
            s
        })
        .collect();
    for img in synth::write_layout(std::path::Path::new(&out), &specs) {
        println!("{} {}", img.name, img.digest);
    }
}
