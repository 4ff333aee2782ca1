//! The operator tools of the `juxmem` command on local federations: `status --json`, `get
//! --npy` (read back with NumPy), `show --png` (pixels checked), their errors, and the
//! progress display of `launch`. Every process is bounded by a timeout.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::federation::LocalFederation;
use common::mpirun::{example, mpi_env, run_with_timeout, Output};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::FullPolicy;
use juxmem::{ArrayOptions, Federation, Solo};

const LIMIT: Duration = Duration::from_secs(120);

/// `juxmem ARGS` as a client of `cluster`.
fn juxmem(fed: &LocalFederation, cluster: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_juxmem"));
    fed.env(&mut cmd, cluster);
    cmd.args(args);
    run_with_timeout(cmd, LIMIT)
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.success,
        "{what} failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

/// A failure with a typed message: non-zero exit, the error's kind and code, no panic.
fn fails_with(out: &Output, kind: &str, code: &str, words: &[&str]) {
    let what = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(!out.success, "expected a failure\n{what}");
    assert!(!out.stderr.contains("panicked"), "{what}");
    assert!(out.stderr.contains(kind), "expected {kind:?}\n{what}");
    assert!(out.stderr.contains(code), "expected {code:?}\n{what}");
    for w in words {
        assert!(out.stderr.contains(w), "expected {w:?}\n{what}");
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("juxmem-tools-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn status_json(fed: &LocalFederation, cluster: &str) -> serde_json::Value {
    let out = juxmem(fed, cluster, &["status", "--json"]);
    ok(&out, "juxmem status --json");
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", out.stdout))
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn status_json_and_typed_errors() {
    let fed = LocalFederation::start("tools-status", &[("A", 1), ("B", 1)]);
    let me = Federation::join(fed.config("A")).unwrap();
    let layout = Layout::new(&[4, 5], &[Dist::Block, Dist::Block], &[1, 1]).unwrap();
    let opts = ArrayOptions::new(layout).retention(2, FullPolicy::DropOldest);
    let mut gone = me.create::<f64, _>(&Solo, "tools/gone", opts).unwrap();
    for v in 1..=3 {
        gone.acquire().unwrap();
        gone.local_mut().unwrap().fill(v as f64);
        gone.release().unwrap();
    }
    let line = Layout::one_d(7, Dist::Block, 1).unwrap();
    let _line = me
        .create::<i32, _>(&Solo, "tools/line", ArrayOptions::new(line))
        .unwrap();
    let leaver = Federation::join_as(fed.config("B"), "leaver").unwrap();
    let leaver_name = leaver.node().name.clone();
    leaver.leave().unwrap();
    drop(leaver);

    // status --json: clusters, members (and the dead), arrays with versions and placement.
    let doc = status_json(&fed, "B");
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["federation"], "tools-status");
    let clusters = doc["clusters"].as_array().unwrap();
    assert_eq!(names(&doc["clusters"]), ["A", "B"]);
    let (a, b) = (&clusters[0], &clusters[1]);
    assert_eq!(a["manager"]["name"], "A/manager");
    assert_eq!(a["manager"]["kind"], "manager");
    // One manager replica, leading.
    assert_eq!(a["replicas"].as_array().map(Vec::len), Some(1), "{a}");
    assert_eq!(a["replicas"][0]["id"], 1);
    assert_eq!(a["replicas"][0]["leader"], true);
    let members_a = names(&a["members"]);
    assert!(members_a.contains(&"A/provider-0".to_string()), "{a}");
    assert!(members_a.contains(&me.node().name), "{a}");
    for m in a["members"].as_array().unwrap() {
        match m["kind"].as_str().unwrap() {
            "daemon" => assert_eq!(m["capacity"], 512u64 << 20, "{m}"),
            // Ranks offer half the node's available memory unless configured.
            "rank" => assert!(m["capacity"].as_u64().is_some_and(|c| c > 0), "{m}"),
            other => panic!("member of kind {other}: {m}"),
        }
        assert!(
            m["incarnation"].as_str().unwrap().parse::<u64>().is_ok(),
            "{m}"
        );
    }
    assert_eq!(names(&b["members"]), ["B/provider-0"]);
    let dead = b["dead"].as_array().unwrap();
    let d = dead
        .iter()
        .find(|d| d["name"] == leaver_name.as_str())
        .unwrap_or_else(|| panic!("{leaver_name} not among the dead: {b}"));
    assert_eq!(d["reason"], "left");
    assert!(d["ago_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(names(&a["arrays"]), ["tools/gone", "tools/line"]);
    assert!(b["arrays"].as_array().unwrap().is_empty());
    let g = &a["arrays"][0];
    assert_eq!(g["elem"], "f64");
    assert_eq!(g["shape"], serde_json::json!([4, 5]));
    assert_eq!(g["dists"], serde_json::json!(["block", "block"]));
    assert_eq!(
        (g["version"].as_u64(), g["oldest_kept"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(g["retention"]["on_full"], "drop_oldest");
    assert_eq!(g["dropped_unread"], 1);
    assert_eq!(g["homes"], "creator");
    let blocks = g["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["health"], "healthy");
    assert!(blocks[0]["term"].as_u64().unwrap() >= 1);
    assert_eq!(blocks[0]["bytes"], 4 * 5 * 8);
    assert_eq!(blocks[0]["home"]["name"], me.node().name.as_str());
    let stamps: Vec<u64> = blocks[0]["stamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_u64().unwrap())
        .collect();
    assert_eq!(stamps, [2, 3]);

    // Typed errors: message, kind and code, non-zero exit, no panic.
    let dir = scratch("errors");
    let file = dir.join("x.npy");
    let f = file.to_str().unwrap();
    let out = juxmem(&fed, "B", &["get", "tools/nothing", "--npy", f]);
    fails_with(&out, "not found", "code 400", &["tools/nothing"]);
    let out = juxmem(&fed, "B", &["get", "tools/gone@1", "--npy", f]);
    fails_with(
        &out,
        "version gone",
        "code 402",
        &["tools/gone@1", "oldest kept: 2"],
    );
    let out = juxmem(&fed, "B", &["show", "tools/gone@1", "--png", f]);
    fails_with(&out, "version gone", "code 402", &["tools/gone@1"]);
    let out = juxmem(&fed, "B", &["get", "tools/gone@9", "--npy", f]);
    fails_with(
        &out,
        "not found",
        "code 400",
        &["not released yet (latest: 3)"],
    );
    for bad in [
        "tools/gone@",
        "tools/gone@x",
        "tools/gone@-1",
        "tools/gone@1.0",
    ] {
        let out = juxmem(&fed, "B", &["get", bad, "--npy", f]);
        fails_with(
            &out,
            "invalid argument",
            "code 100",
            &["bad array reference"],
        );
    }
    let out = juxmem(&fed, "B", &["get", "tools/bad//name", "--npy", f]);
    fails_with(&out, "invalid argument", "code 100", &["bad array name"]);
    for path in ["/proc/juxmem/no/such/dir/x.npy", dir.to_str().unwrap()] {
        let out = juxmem(&fed, "B", &["get", "tools/gone", "--npy", path]);
        fails_with(
            &out,
            "invalid argument",
            "code 100",
            &["cannot write", path],
        );
    }
    let out = juxmem(&fed, "B", &["show", "tools/line", "--png", f]);
    fails_with(&out, "invalid argument", "code 100", &["1-D"]);
    let out = juxmem(
        &fed,
        "B",
        &["show", "tools/gone", "--png", f, "--slice", "1"],
    );
    fails_with(&out, "invalid argument", "code 100", &["--slice"]);
    let out = juxmem(&fed, "B", &["get", "tools/gone", "--npz", f]);
    fails_with(
        &out,
        "invalid argument",
        "code 100",
        &["unknown option --npz"],
    );
    assert!(!file.exists(), "a failed get left {}", file.display());
    // Nothing partial is left behind either.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    // A version still retained reads back.
    let out = juxmem(&fed, "B", &["get", "tools/gone@2", "--npy", f]);
    ok(&out, "get tools/gone@2");
    let (shape, values) = read_npy_f64(&file);
    assert_eq!((shape, values), (vec![4, 5], vec![2.0; 20]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `.npy` file of `<f8`, parsed here (so that the format is checked without NumPy too).
fn read_npy_f64(path: &Path) -> (Vec<u64>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "magic and version 1.0");
    let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0, "data aligned on 64 bytes");
    let header = std::str::from_utf8(&bytes[10..10 + hl]).unwrap();
    assert!(header.ends_with('\n'), "{header:?}");
    assert!(
        header.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': ("),
        "{header:?}"
    );
    let dims = &header[header.find("'shape': (").unwrap() + 10..header.find(')').unwrap()];
    let shape: Vec<u64> = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    let values = bytes[10 + hl..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, values)
}

/// The arrays `fed_check tools-write` creates: (name suffix, NumPy dtype).
const TYPES: [(&str, &str); 10] = [
    ("i8", "int8"),
    ("u8", "uint8"),
    ("i16", "int16"),
    ("u16", "uint16"),
    ("i32", "int32"),
    ("u32", "uint32"),
    ("i64", "int64"),
    ("u64", "uint64"),
    ("f32", "float32"),
    ("f64", "float64"),
];

/// NumPy's check of the files: element `i` (C order) of version `v` is `i + 3 v`, converted to
/// the type as Rust's `as` does (wrapping), or `0.5 (i + 3 v) - 7.25` for floating point types.
const NUMPY_CHECK: &str = r#"
import sys
import numpy as np
for case in sys.argv[1:]:
    path, dtype, shape, v = case.split(':')
    shape = tuple(int(d) for d in shape.split('x'))
    v = int(v)
    a = np.load(path, allow_pickle=False)
    lin = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) + 3 * v
    if np.dtype(dtype).kind == 'f':
        want = (lin * 0.5 - 7.25).astype(dtype)
    else:
        want = lin.astype(dtype)
    wrong = int(np.count_nonzero(a != want)) if a.shape == want.shape else -1
    print(f"NPY {path} dtype={a.dtype} shape={'x'.join(map(str, a.shape))} "
          f"fortran={a.flags.f_contiguous and a.ndim > 1} wrong={wrong}")
"#;

fn numpy_available() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("python3: {e}")),
    }
}

/// The `wrote ...` line of `juxmem show` as numbers: image width and height, then the field's
/// and the colour bar's x, y, width, height.
fn geometry(stdout: &str) -> [usize; 10] {
    // wrote FILE: W x H pixels; NAME version V; field R x C at (X, Y) size W x H; colour bar
    // at (X, Y) size W x H; range [LO, HI]
    let line = stdout.lines().find(|l| l.starts_with("wrote ")).unwrap();
    let numbers = |s: &str| -> Vec<usize> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    };
    let (head, tail) = line.split_once(" pixels;").unwrap();
    let wh = numbers(head.rsplit(": ").next().unwrap());
    let f = numbers(&tail[tail.find("; field ").unwrap()..tail.find("; range").unwrap()]);
    assert!(wh.len() == 2 && f.len() == 10, "{line}");
    [wh[0], wh[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]]
}

fn decode_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn near(got: [u8; 3], want: [u8; 3]) -> bool {
    got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 3)
}

#[test]
fn get_and_show_read_what_an_mpi_job_wrote() {
    let fed = LocalFederation::start("tools-get", &[("A", 2)]);
    let mut write = Command::new("mpirun");
    mpi_env(&mut write);
    fed.env(&mut write, "A");
    write
        .args(["-np", "3"])
        .arg(example("fed_check"))
        .args(["tools-write", "tools", "3"]);
    let out = run_with_timeout(write, LIMIT);
    ok(&out, "fed_check tools-write");
    assert!(
        out.stdout.contains("TOOLS wrote 11 arrays"),
        "{}",
        out.stdout
    );

    let doc = status_json(&fed, "A");
    let arrays = &doc["clusters"][0]["arrays"];
    assert_eq!(arrays.as_array().unwrap().len(), 11, "{arrays}");
    for a in arrays.as_array().unwrap() {
        assert_eq!(
            (a["version"].as_u64(), a["homes"].as_str()),
            (Some(3), Some("daemons"))
        );
        for b in a["blocks"].as_array().unwrap() {
            assert_eq!(b["home"]["kind"], "daemon", "{a}");
            assert_eq!(b["health"], "healthy", "{a}");
        }
    }

    // get: every element type, the latest version, and an older one still kept.
    let dir = scratch("get");
    let mut cases = Vec::new();
    let mut get = |name: &str, version: Option<u64>, dtype: &str, shape: &str| {
        let file = dir.join(format!(
            "{}{}.npy",
            name.replace('/', "_"),
            version.map_or(String::new(), |v| format!("_v{v}"))
        ));
        let reference = match version {
            Some(v) => format!("{name}@{v}"),
            None => name.to_string(),
        };
        let out = juxmem(
            &fed,
            "A",
            &["get", &reference, "--npy", file.to_str().unwrap()],
        );
        ok(&out, &format!("juxmem get {reference}"));
        let v = version.unwrap_or(3);
        assert!(
            out.stdout.contains(&format!("{name} version {v}")),
            "{}",
            out.stdout
        );
        cases.push((file, dtype.to_string(), shape.to_string(), v));
    };
    for (t, dtype) in TYPES {
        get(&format!("tools/{t}"), None, dtype, "13x17");
    }
    get("tools/f64", Some(2), "float64", "13x17");
    get("tools/i32", Some(2), "int32", "13x17");
    get("tools/cube", None, "float32", "4x13x17");

    // Checked here for f64 (the format), then by NumPy element by element (every type).
    let (shape, values) = read_npy_f64(&cases[9].0);
    assert_eq!(shape, [13, 17]);
    for (i, &x) in values.iter().enumerate() {
        assert_eq!(x, (i as f64 + 9.0) * 0.5 - 7.25, "element {i}");
    }
    match numpy_available() {
        Err(why) => println!("SKIPPED the NumPy check: numpy cannot be imported ({why})"),
        Ok(()) => {
            let mut py = Command::new("python3");
            py.args(["-c", NUMPY_CHECK]);
            for (file, dtype, shape, v) in &cases {
                py.arg(format!("{}:{dtype}:{shape}:{v}", file.display()));
            }
            let out = run_with_timeout(py, LIMIT);
            ok(&out, "numpy check");
            let lines: Vec<&str> = out
                .stdout
                .lines()
                .filter(|l| l.starts_with("NPY "))
                .collect();
            assert_eq!(lines.len(), cases.len(), "{}", out.stdout);
            for ((_, dtype, shape, _), line) in cases.iter().zip(&lines) {
                let want = format!("dtype={dtype} shape={shape} fortran=False wrong=0");
                assert!(line.ends_with(&want), "expected {want:?}: {line}");
            }
            eprintln!(
                "numpy read {} files, every element as expected",
                lines.len()
            );
        }
    }

    // show: a PNG of the size it reports, with the field, the colour bar and a title.
    let png = dir.join("f64.png");
    let out = juxmem(
        &fed,
        "A",
        &["show", "tools/f64", "--png", png.to_str().unwrap()],
    );
    ok(&out, "juxmem show");
    let [w, h, px, py, pw, ph, bx, by, bw, bh] = geometry(&out.stdout);
    let (iw, ih, rgb) = decode_png(&png);
    assert_eq!((iw, ih), (w, h), "{}", out.stdout);
    // Whole pixels per cell, the longer side at most 512: 30 per cell for 13 x 17.
    assert_eq!((pw, ph), (17 * 30, 13 * 30), "{}", out.stdout);
    assert!(px + pw < bx && bx + bw < w && py + ph < h && (by, bh) == (py, ph));
    let pixel = |x: usize, y: usize| {
        let i = (y * iw + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let (purple, yellow) = ([68, 1, 84], [253, 231, 37]); // viridis' ends
    let cell = |r: usize, c: usize| pixel(px + c * 30 + 15, py + r * 30 + 15);
    assert_eq!(cell(0, 0), purple, "the minimum");
    assert_eq!(cell(12, 16), yellow, "the maximum");
    assert!(
        near(cell(6, 8), [33, 145, 140]),
        "mid-range: {:?}",
        cell(6, 8)
    );
    assert_eq!(pixel(bx + bw / 2, by), yellow, "colour bar top");
    assert_eq!(pixel(bx + bw / 2, by + bh - 1), purple, "colour bar bottom");
    assert!(near(pixel(bx + bw / 2, by + bh / 2), [33, 145, 140]));
    assert_eq!(pixel(bx - 1, by + 5), [0, 0, 0], "colour bar frame");
    assert_eq!(pixel(0, 0), [255, 255, 255], "background");
    let ink = |x0: usize, x1: usize, y0: usize, y1: usize| {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| pixel(x, y) == [0, 0, 0])
            .count()
    };
    assert!(ink(0, w, 0, py - 2) > 200, "no title above the field");
    assert!(
        ink(bx + bw + 2, w, by, by + bh) > 100,
        "no colour bar labels"
    );
    assert!(ink(px, px + pw, py + ph + 2, h) > 50, "no column ticks");
    assert!(ink(0, px - 2, py, py + ph) > 50, "no row ticks");

    // A slice of the 3-D array, with a fixed colour range.
    let png = dir.join("cube.png");
    let out = juxmem(
        &fed,
        "A",
        &[
            "show",
            "tools/cube@3",
            "--png",
            png.to_str().unwrap(),
            "--slice",
            "2",
            "--range",
            "0,500",
        ],
    );
    ok(&out, "juxmem show --slice");
    assert!(out.stdout.contains("slice [2]"), "{}", out.stdout);
    let [_, _, px, py, ..] = geometry(&out.stdout);
    let (iw, _, rgb) = decode_png(&png);
    // Element (2, 0, 0) = 0.5 (2 * 13 * 17 + 9) - 7.25 = 218.25, at 218.25 / 500 of the
    // scale: entry 111 of 256 of viridis.
    let i = ((py + 15) * iw + px + 15) * 3;
    let got = [rgb[i], rgb[i + 1], rgb[i + 2]];
    assert!(near(got, [38, 129, 142]), "{got:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pipeline whose stages print `stage N cycle K` lines, as the weather stages do.
fn progress_pipeline(dir: &Path) -> PathBuf {
    let stage = dir.join("stage.sh");
    std::fs::write(
        &stage,
        "#!/bin/sh\nk=0\nwhile [ $k -lt $3 ]; do\n  echo \"stage $1 cycle $k: step done\"\n  \
         sleep 0.3\n  k=$((k + 1))\ndone\necho \"STAGE $1 finished $3 cycles\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pipeline = dir.join("progress.pipeline");
    let s = stage.display();
    std::fs::write(
        &pipeline,
        format!(
            "federation progress-test\ncluster A providers=0\ncluster B providers=0\n\
             stage A np=1 {s} 1 --cycles 4\nstage B np=1 {s} 2 --cycles 3\n"
        ),
    )
    .unwrap();
    pipeline
}

#[test]
fn launch_progress_is_plain_lines_when_piped() {
    let dir = scratch("plain");
    let pipeline = progress_pipeline(&dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_juxmem"));
    mpi_env(&mut cmd);
    cmd.args(["launch", pipeline.to_str().unwrap(), "--timeout", "100"]);
    let out = run_with_timeout(cmd, LIMIT);
    ok(&out, "juxmem launch");
    for line in [
        "[A] stage 1 cycle 0: step done",
        "[A] stage 1 cycle 3: step done",
        "[B] stage 2 cycle 2: step done",
        "[A] STAGE 1 finished 4 cycles",
        "launch: all stages succeeded",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?}:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains('\x1b'),
        "escape codes:\n{}",
        out.stdout
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn launch_progress_updates_in_place_on_a_terminal() {
    // `script` (util-linux) runs the launcher on a pseudo-terminal.
    if Command::new("script").arg("--version").output().is_err() {
        println!("SKIPPED: no `script` command to run the launcher on a terminal");
        return;
    }
    let dir = scratch("tty");
    let pipeline = progress_pipeline(&dir);
    let launch = format!(
        "'{}' launch '{}' --timeout 100",
        env!("CARGO_BIN_EXE_juxmem"),
        pipeline.display()
    );
    let mut cmd = Command::new("script");
    mpi_env(&mut cmd);
    cmd.env("COLUMNS", "100")
        .args(["-q", "-e", "-c", &launch, "/dev/null"]);
    let out = run_with_timeout(cmd, LIMIT);
    ok(&out, "juxmem launch on a terminal");
    let text = out.stdout.replace('\r', "");
    // Status lines redrawn in place (cursor up, erase), with the cycle count.
    assert!(text.contains("\x1b[2A"), "no redraw:\n{text}");
    assert!(text.contains("\x1b[J"), "no erase:\n{text}");
    for s in [
        "stage 1 (A): cycle 2 of 4",
        "stage 1 (A): done, cycle 4 of 4",
        "stage 2 (B): done, cycle 3 of 3",
        "| STAGE 1 finished 4 cycles",
        "launch: all stages succeeded",
    ] {
        assert!(text.contains(s), "missing {s:?}:\n{text}");
    }
    // The stages' lines are not scrolled one by one.
    assert!(!text.contains("[A] stage 1 cycle 0"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
