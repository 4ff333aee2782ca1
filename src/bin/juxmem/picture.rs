//! Heat-map pictures of 2-D fields, written as PNG: the field in a perceptually uniform colour
//! map (viridis), a colour bar with its scale, a title, and axis ticks with index labels, as
//! scientists expect from `imshow` plus `colorbar`.
//!
//! Self-contained on purpose (the standard library and the `png` crate, no font files, no
//! plotting crate), so that the `juxmem show` command and the weather example (which includes
//! this file by path) draw the same pictures: text comes from a small built-in 5x9 bitmap font.

use std::path::Path;

/// An RGB colour.
pub type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [0, 0, 0];
/// Cells holding NaN (or an infinity, when no range is given) are drawn in grey.
pub const MISSING: Rgb = [190, 190, 190];

/// Pixels per font pixel.
const TEXT_SCALE: usize = 2;
/// Font cell: 5 x 9 (capitals and digits 7 high, two rows of descenders).
const GLYPH_W: usize = 5;
const GLYPH_H: usize = 9;
/// Horizontal advance of one character, in pixels.
const ADVANCE: usize = (GLYPH_W + 1) * TEXT_SCALE;
/// Height of a line of text, in pixels.
const LINE: usize = GLYPH_H * TEXT_SCALE;
/// The longer side of the field is drawn this long (whole pixels per cell when it is shorter).
const PLOT_TARGET: usize = 512;
/// The shorter side is never drawn shorter than this.
const PLOT_MIN: usize = 32;
const PAD: usize = 10;
const TICK: usize = 5;
const BAR_GAP: usize = 24;
const BAR_WIDTH: usize = 20;

/// A field to draw.
pub struct HeatMap<'a> {
    /// `rows x cols` values, row-major, row 0 drawn at the top.
    pub field: &'a [f64],
    /// Rows (the vertical axis).
    pub rows: usize,
    /// Columns (the horizontal axis).
    pub cols: usize,
    /// Values mapped to the two ends of the colour map; `None`: the finite values' minimum
    /// and maximum.
    pub range: Option<(f64, f64)>,
    /// Title, above the picture.
    pub title: String,
    /// Label of the vertical axis (written upwards, left of the row ticks).
    pub row_label: String,
    /// Label of the horizontal axis (below the column ticks).
    pub col_label: String,
}

/// A rectangle of pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
}

/// An RGB image, row-major, 3 bytes per pixel.
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

impl Image {
    fn new(width: usize, height: usize, background: Rgb) -> Image {
        Image {
            width,
            height,
            rgb: background.repeat(width * height),
        }
    }

    /// The colour at (x, y).
    #[cfg(test)]
    pub fn pixel(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    fn set(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// A one-pixel frame just outside `r`.
    fn frame(&mut self, r: Rect, c: Rgb) {
        let (x0, y0) = (r.x.wrapping_sub(1), r.y.wrapping_sub(1));
        for x in x0..=r.x + r.w {
            self.set(x, y0, c);
            self.set(x, r.y + r.h, c);
        }
        for y in y0..=r.y + r.h {
            self.set(x0, y, c);
            self.set(r.x + r.w, y, c);
        }
    }

    /// Encodes the image as an 8-bit RGB PNG.
    pub fn encode_png(&self, out: impl std::io::Write) -> std::io::Result<()> {
        let mut enc = png::Encoder::new(out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(&self.rgb)
            .map_err(std::io::Error::other)?;
        w.finish().map_err(std::io::Error::other)
    }

    /// Writes the image as a PNG file, creating its directory if needed.
    #[allow(dead_code)] // the weather example's; the command writes through a temporary file
    pub fn write_png(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        self.encode_png(file)
    }
}

/// A drawn heat map and where its parts are.
pub struct Picture {
    /// The pixels.
    pub image: Image,
    /// The field.
    pub plot: Rect,
    /// The colour bar (its top row is the top of the range).
    pub bar: Rect,
    /// The colour range used.
    pub range: (f64, f64),
}

/// Draws `map`.
pub fn render(map: &HeatMap<'_>) -> Picture {
    assert_eq!(
        map.field.len(),
        map.rows * map.cols,
        "field is not rows x cols"
    );
    let (rows, cols) = (map.rows.max(1), map.cols.max(1));
    let (lo, hi) = colour_range(map);
    // Plot size: whole pixels per cell up to PLOT_TARGET, else sampled down; aspect kept.
    let longest = rows.max(cols);
    let (pw, ph) = if longest <= PLOT_TARGET {
        let s = PLOT_TARGET / longest;
        (cols * s, rows * s)
    } else {
        (
            (cols * PLOT_TARGET).div_ceil(longest),
            (rows * PLOT_TARGET).div_ceil(longest),
        )
    };
    let (pw, ph) = (pw.max(PLOT_MIN), ph.max(PLOT_MIN));

    let row_ticks = index_ticks(rows, ph);
    let col_ticks = index_ticks(cols, pw);
    let bar_ticks = nice_ticks(lo, hi, (ph / 60).clamp(2, 8));
    let bar_step = bar_ticks.get(1).map_or(hi - lo, |t| t - bar_ticks[0]);
    let bar_labels: Vec<String> = bar_ticks
        .iter()
        .map(|&v| format_tick(v, bar_step, lo, hi))
        .collect();
    let row_label_w = row_ticks
        .iter()
        .map(|r| text_width(&r.to_string()))
        .max()
        .unwrap_or(0);
    let bar_label_w = bar_labels.iter().map(|l| text_width(l)).max().unwrap_or(0);

    let left = PAD + LINE + PAD + row_label_w + 4 + TICK;
    let top = PAD + LINE + 2 * PAD;
    let plot = Rect {
        x: left,
        y: top,
        w: pw,
        h: ph,
    };
    let bar = Rect {
        x: left + pw + BAR_GAP,
        y: top,
        w: BAR_WIDTH,
        h: ph,
    };
    let title_w = text_width(&map.title);
    let width = (bar.x + BAR_WIDTH + TICK + 4 + bar_label_w + 2 * PAD).max(title_w + 2 * PAD);
    let height = top + ph + TICK + 4 + LINE + PAD + LINE + PAD;
    let mut img = Image::new(width, height, WHITE);

    // Title, centred.
    draw_text(&mut img, (width - title_w) / 2, PAD, &map.title, INK);

    // The field, each pixel the cell under its centre.
    for py in 0..ph {
        let r = (py * rows / ph).min(rows - 1);
        for px in 0..pw {
            let c = (px * cols / pw).min(cols - 1);
            let v = map.field[r * map.cols + c];
            img.set(plot.x + px, plot.y + py, colour(v, lo, hi));
        }
    }
    img.frame(plot, INK);

    // Row ticks (left) and column ticks (below), at cell centres.
    for &r in &row_ticks {
        let y = plot.y + (2 * r + 1) * ph / (2 * rows);
        for x in plot.x - 1 - TICK..plot.x - 1 {
            img.set(x, y, INK);
        }
        let label = r.to_string();
        let x = plot.x - 1 - TICK - 4 - text_width(&label);
        draw_text(
            &mut img,
            x,
            y.saturating_sub(7 * TEXT_SCALE / 2),
            &label,
            INK,
        );
    }
    for &c in &col_ticks {
        let x = plot.x + (2 * c + 1) * pw / (2 * cols);
        for y in plot.y + ph + 1..plot.y + ph + 1 + TICK {
            img.set(x, y, INK);
        }
        let label = c.to_string();
        let w = text_width(&label);
        draw_text(
            &mut img,
            x.saturating_sub(w / 2),
            plot.y + ph + 1 + TICK + 4,
            &label,
            INK,
        );
    }
    // Axis labels.
    let below = plot.y + ph + 1 + TICK + 4 + LINE + PAD / 2;
    let w = text_width(&map.col_label);
    draw_text(
        &mut img,
        (plot.x + pw / 2).saturating_sub(w / 2),
        below,
        &map.col_label,
        INK,
    );
    let h = text_width(&map.row_label);
    draw_text_up(
        &mut img,
        PAD,
        (plot.y + ph / 2 + h / 2).min(height - 1),
        &map.row_label,
        INK,
    );

    // Colour bar: the top of the range at the top.
    for py in 0..ph {
        let t = if ph > 1 {
            1.0 - py as f64 / (ph - 1) as f64
        } else {
            1.0
        };
        for px in 0..BAR_WIDTH {
            img.set(bar.x + px, bar.y + py, viridis(t));
        }
    }
    img.frame(bar, INK);
    for (&v, label) in bar_ticks.iter().zip(&bar_labels) {
        let t = (v - lo) / (hi - lo);
        let y = bar.y + ((1.0 - t) * (ph - 1) as f64).round() as usize;
        for x in bar.x + BAR_WIDTH + 1..bar.x + BAR_WIDTH + 1 + TICK {
            img.set(x, y, INK);
        }
        draw_text(
            &mut img,
            bar.x + BAR_WIDTH + 1 + TICK + 4,
            y.saturating_sub(7 * TEXT_SCALE / 2),
            label,
            INK,
        );
    }
    Picture {
        image: img,
        plot,
        bar,
        range: (lo, hi),
    }
}

/// The colour range: the given one, else the finite values' extent (widened when flat).
fn colour_range(map: &HeatMap<'_>) -> (f64, f64) {
    let (lo, hi) = map.range.unwrap_or_else(|| {
        map.field
            .iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            })
    });
    if !(lo.is_finite() && hi.is_finite()) {
        (0.0, 1.0)
    } else if hi > lo {
        (lo, hi)
    } else {
        // A flat field: a range around its value, so it shows mid-scale and ticks exist.
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.01 };
        (lo - d, lo + d)
    }
}

fn colour(v: f64, lo: f64, hi: f64) -> Rgb {
    if v.is_nan() {
        return MISSING;
    }
    viridis((v - lo) / (hi - lo))
}

/// Viridis at `t` in [0, 1] (clamped).
pub fn viridis(t: f64) -> Rgb {
    let i = (t.clamp(0.0, 1.0) * 255.0).round() as usize;
    VIRIDIS[i]
}

/// "Nice" ticks (1, 2 or 5 times a power of ten apart) inside [lo, hi], about `target` of them.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step + 0.0).collect()
}

fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let nice = if m < 1.5 {
        1.0
    } else if m < 3.0 {
        2.0
    } else if m < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * p
}

/// Integer ticks over `0..n` for an axis `pixels` long: about one per 60 pixels, and at least
/// twice the widest label apart (labels never touch).
fn index_ticks(n: usize, pixels: usize) -> Vec<usize> {
    if n <= 1 {
        return vec![0];
    }
    let spacing = (2 * text_width(&(n - 1).to_string())).max(60);
    let target = (pixels / spacing).clamp(2, 10);
    let step = (nice_step((n - 1) as f64 / target as f64).round() as usize).max(1);
    (0..n).step_by(step).collect()
}

/// A tick label: as many decimals as the step needs; scientific notation for very large or
/// very small scales.
pub fn format_tick(v: f64, step: f64, lo: f64, hi: f64) -> String {
    let v = v + 0.0; // no "-0"
    let mag = lo.abs().max(hi.abs());
    if v == 0.0 {
        return "0".into();
    }
    let step_exp = step.abs().log10().floor() as i32;
    if !(1e-3..1e6).contains(&mag) {
        let digits = (v.abs().log10().floor() as i32 - step_exp).clamp(0, 6) as usize;
        format!("{v:.digits$e}")
    } else {
        let decimals = (-step_exp).clamp(0, 9) as usize;
        format!("{v:.decimals$}")
    }
}

/// Width of `text` in pixels.
pub fn text_width(text: &str) -> usize {
    let n = text.chars().count();
    if n == 0 {
        0
    } else {
        n * ADVANCE - TEXT_SCALE
    }
}

/// The 5 x 9 rows of `c` (a box for characters outside printable ASCII).
fn glyph(c: char) -> [u8; GLYPH_H] {
    let code = c as u32;
    let mut rows = [0u8; GLYPH_H];
    if !(32..127).contains(&code) {
        return [
            0, 0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111, 0, 0,
        ];
    }
    let i = (code - 32) as usize;
    let (block, k) = (i / 8, i % 8);
    for (r, line) in FONT[block].iter().enumerate() {
        let cell = &line.as_bytes()[k * (GLYPH_W + 1)..k * (GLYPH_W + 1) + GLYPH_W];
        rows[r] = cell
            .iter()
            .fold(0u8, |acc, &b| (acc << 1) | u8::from(b == b'#'));
    }
    rows
}

/// Font pixels of `text` as (x, y) in font units, left to right, y down from the cap line.
fn text_pixels(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    text.chars().enumerate().flat_map(|(i, c)| {
        let rows = glyph(c);
        (0..GLYPH_H).flat_map(move |gy| {
            (0..GLYPH_W)
                .filter(move |gx| rows[gy] >> (GLYPH_W - 1 - gx) & 1 == 1)
                .map(move |gx| (i * (GLYPH_W + 1) + gx, gy))
        })
    })
}

/// Draws `text` with its top-left corner at (x, y).
pub fn draw_text(img: &mut Image, x: usize, y: usize, text: &str, c: Rgb) {
    for (fx, fy) in text_pixels(text) {
        for dy in 0..TEXT_SCALE {
            for dx in 0..TEXT_SCALE {
                img.set(x + fx * TEXT_SCALE + dx, y + fy * TEXT_SCALE + dy, c);
            }
        }
    }
}

/// Draws `text` reading upwards (rotated a quarter turn anticlockwise), the start of its
/// baseline side at (x, bottom): it occupies x..x + LINE and bottom - width..bottom.
fn draw_text_up(img: &mut Image, x: usize, bottom: usize, text: &str, c: Rgb) {
    for (fx, fy) in text_pixels(text) {
        for dy in 0..TEXT_SCALE {
            for dx in 0..TEXT_SCALE {
                let along = fx * TEXT_SCALE + dx;
                if let Some(py) = bottom.checked_sub(along) {
                    img.set(x + fy * TEXT_SCALE + dy, py, c);
                }
            }
        }
    }
}

/// The font, printable ASCII in blocks of eight characters; each glyph 5 columns by 9 rows
/// ('#' is ink), capitals and digits on rows 0-6, descenders on rows 7-8.
const FONT: [[&str; GLYPH_H]; 12] = [
    //   ! " # $ % & '
    [
        "..... ..#.. .#.#. .#.#. ..#.. ##... .##.. ..#..",
        "..... ..#.. .#.#. .#.#. .#### ##..# #..#. ..#..",
        "..... ..#.. ..... ##### #.#.. ...#. #.#.. .....",
        "..... ..#.. ..... .#.#. .###. ..#.. .#... .....",
        "..... ..#.. ..... ##### ..#.# .#... #.#.# .....",
        "..... ..... ..... .#.#. ####. #..## #..#. .....",
        "..... ..#.. ..... .#.#. ..#.. ...## .##.# .....",
        "..... ..... ..... ..... ..... ..... ..... .....",
        "..... ..... ..... ..... ..... ..... ..... .....",
    ],
    // ( ) * + , - . /
    [
        "...#. .#... ..... ..... ..... ..... ..... ....#",
        "..#.. ..#.. ..#.. ..#.. ..... ..... ..... ....#",
        ".#... ...#. #.#.# ..#.. ..... ..... ..... ...#.",
        ".#... ...#. .###. ##### ..... ##### ..... ..#..",
        ".#... ...#. #.#.# ..#.. ..... ..... ..... .#...",
        "..#.. ..#.. ..#.. ..#.. .##.. ..... .##.. #....",
        "...#. .#... ..... ..... .##.. ..... .##.. #....",
        "..... ..... ..... ..... ..#.. ..... ..... .....",
        "..... ..... ..... ..... .#... ..... ..... .....",
    ],
    // 0 1 2 3 4 5 6 7
    [
        ".###. ..#.. .###. ##### ...#. ##### ..##. #####",
        "#...# .##.. #...# ...#. ..##. #.... .#... ....#",
        "#..## ..#.. ....# ..#.. .#.#. ####. #.... ...#.",
        "#.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#..",
        "##..# ..#.. ..#.. ....# ##### ....# #...# .#...",
        "#...# ..#.. .#... #...# ...#. #...# #...# .#...",
        ".###. .###. ##### .###. ...#. .###. .###. .#...",
        "..... ..... ..... ..... ..... ..... ..... .....",
        "..... ..... ..... ..... ..... ..... ..... .....",
    ],
    // 8 9 : ; < = > ?
    [
        ".###. .###. ..... ..... ...#. ..... .#... .###.",
        "#...# #...# .##.. .##.. ..#.. ..... ..#.. #...#",
        "#...# #...# .##.. .##.. .#... ##### ...#. ....#",
        ".###. .#### ..... ..... #.... ..... ....# ...#.",
        "#...# ....# .##.. .##.. .#... ##### ...#. ..#..",
        "#...# ...#. .##.. .##.. ..#.. ..... ..#.. .....",
        ".###. .##.. ..... ..#.. ...#. ..... .#... ..#..",
        "..... ..... ..... .#... ..... ..... ..... .....",
        "..... ..... ..... ..... ..... ..... ..... .....",
    ],
    // @ A B C D E F G
    [
        ".###. .###. ####. .###. ###.. ##### ##### .###.",
        "#...# #...# #...# #...# #..#. #.... #.... #...#",
        "....# #...# #...# #.... #...# #.... #.... #....",
        ".##.# ##### ####. #.... #...# ####. ####. #.###",
        "#.#.# #...# #...# #.... #...# #.... #.... #...#",
        "#.#.# #...# #...# #...# #..#. #.... #.... #...#",
        ".###. #...# ####. .###. ###.. ##### #.... .####",
        "..... ..... ..... ..... ..... ..... ..... .....",
        "..... ..... ..... ..... ..... ..... ..... .....",
    ],
    // H I J K L M N O
    [
        "#...# .###. ..### #...# #.... #...# #...# .###.",
        "#...# ..#.. ...#. #..#. #.... ##.## #...# #...#",
        "#...# ..#.. ...#. #.#.. #.... #.#.# ##..# #...#",
        "##### ..#.. ...#. ##... #.... #.#.# #.#.# #...#",
        "#...# ..#.. ...#. #.#.. #.... #...# #..## #...#",
        "#...# ..#.. #..#. #..#. #.... #...# #...# #...#",
        "#...# .###. .##.. #...# ##### #...# #...# .###.",
        "..... ..... ..... ..... ..... ..... ..... .....",
        "..... ..... ..... ..... ..... ..... ..... .....",
    ],
    // P Q R S T U V W
    [
        "####. .###. ####. .#### ##### #...# #...# #...#",
        "#...# #...# #...# #.... ..#.. #...# #...# #...#",
        "#...# #...# #...# #.... ..#.. #...# #...# #...#",
        "####. #...# ####. .###. ..#.. #...# #...# #.#.#",
        "#.... #.#.# #.#.. ....# ..#.. #...# #...# #.#.#",
        "#.... #..#. #..#. ....# ..#.. #...# .#.#. #.#.#",
        "#.... .##.# #...# ####. ..#.. .###. ..#.. .#.#.",
        "..... ..... ..... ..... ..... ..... ..... .....",
        "..... ..... ..... ..... ..... ..... ..... .....",
    ],
    // X Y Z [ \\ ] ^ _
    [
        "#...# #...# ##### .###. #.... .###. ..#.. .....",
        "#...# #...# ....# .#... #.... ...#. .#.#. .....",
        ".#.#. .#.#. ...#. .#... .#... ...#. #...# .....",
        "..#.. ..#.. ..#.. .#... ..#.. ...#. ..... .....",
        ".#.#. ..#.. .#... .#... ...#. ...#. ..... .....",
        "#...# ..#.. #.... .#... ....# ...#. ..... .....",
        "#...# ..#.. ##### .###. ....# .###. ..... .....",
        "..... ..... ..... ..... ..... ..... ..... #####",
        "..... ..... ..... ..... ..... ..... ..... .....",
    ],
    // ` a b c d e f g
    [
        ".#... ..... #.... ..... ....# ..... ..##. .....",
        "..#.. ..... #.... ..... ....# ..... .#..# .....",
        "..... .###. ####. .###. .#### .###. .#... .####",
        "..... ....# #...# #.... #...# #...# ###.. #...#",
        "..... .#### #...# #.... #...# ##### .#... #...#",
        "..... #...# #...# #...# #...# #.... .#... #...#",
        "..... .#### ####. .###. .#### .###. .#... .####",
        "..... ..... ..... ..... ..... ..... ..... ....#",
        "..... ..... ..... ..... ..... ..... ..... .###.",
    ],
    // h i j k l m n o
    [
        "#.... ..#.. ...#. #.... .##.. ..... ..... .....",
        "#.... ..... ..... #.... ..#.. ..... ..... .....",
        "####. .##.. ..##. #..#. ..#.. ##.#. ####. .###.",
        "#...# ..#.. ...#. #.#.. ..#.. #.#.# #...# #...#",
        "#...# ..#.. ...#. ##... ..#.. #.#.# #...# #...#",
        "#...# ..#.. ...#. #.#.. ..#.. #.#.# #...# #...#",
        "#...# .###. ...#. #..#. .###. #.#.# #...# .###.",
        "..... ..... #..#. ..... ..... ..... ..... .....",
        "..... ..... .##.. ..... ..... ..... ..... .....",
    ],
    // p q r s t u v w
    [
        "..... ..... ..... ..... .#... ..... ..... .....",
        "..... ..... ..... ..... .#... ..... ..... .....",
        "####. .#### #.##. .#### ###.. #...# #...# #...#",
        "#...# #...# ##..# #.... .#... #...# #...# #...#",
        "#...# #...# #.... .###. .#... #...# #...# #.#.#",
        "#...# #...# #.... ....# .#..# #..## .#.#. #.#.#",
        "####. .#### #.... ####. ..##. .##.# ..#.. .#.#.",
        "#.... ....# ..... ..... ..... ..... ..... .....",
        "#.... ....# ..... ..... ..... ..... ..... .....",
    ],
    // x y z { | } ~ DEL
    [
        "..... ..... ..... ...## ..#.. ##... ..... .....",
        "..... ..... ..... ..#.. ..#.. ..#.. ..... .....",
        "#...# #...# ##### ..#.. ..#.. ..#.. .#... .....",
        ".#.#. #...# ...#. .#... ..#.. ...#. #.#.# .....",
        "..#.. #...# ..#.. ..#.. ..#.. ..#.. ...#. .....",
        ".#.#. #...# .#... ..#.. ..#.. ..#.. ..... .....",
        "#...# .#### ##### ...## ..#.. ##... ..... .....",
        "..... ....# ..... ..... ..... ..... ..... .....",
        "..... .###. ..... ..... ..... ..... ..... .....",
    ],
];

/// Viridis (Stéfan van der Walt and Nathaniel Smith, released under CC0 as part of
/// matplotlib's colour maps), 256 entries rounded to 8 bits.
const VIRIDIS: [Rgb; 256] = [
    [68, 1, 84],
    [68, 2, 86],
    [69, 4, 87],
    [69, 5, 89],
    [70, 7, 90],
    [70, 8, 92],
    [70, 10, 93],
    [70, 11, 94],
    [71, 13, 96],
    [71, 14, 97],
    [71, 16, 99],
    [71, 17, 100],
    [71, 19, 101],
    [72, 20, 103],
    [72, 22, 104],
    [72, 23, 105],
    [72, 24, 106],
    [72, 26, 108],
    [72, 27, 109],
    [72, 28, 110],
    [72, 29, 111],
    [72, 31, 112],
    [72, 32, 113],
    [72, 33, 115],
    [72, 35, 116],
    [72, 36, 117],
    [72, 37, 118],
    [72, 38, 119],
    [72, 40, 120],
    [72, 41, 121],
    [71, 42, 122],
    [71, 44, 122],
    [71, 45, 123],
    [71, 46, 124],
    [71, 47, 125],
    [70, 48, 126],
    [70, 50, 126],
    [70, 51, 127],
    [70, 52, 128],
    [69, 53, 129],
    [69, 55, 129],
    [69, 56, 130],
    [68, 57, 131],
    [68, 58, 131],
    [68, 59, 132],
    [67, 61, 132],
    [67, 62, 133],
    [66, 63, 133],
    [66, 64, 134],
    [66, 65, 134],
    [65, 66, 135],
    [65, 68, 135],
    [64, 69, 136],
    [64, 70, 136],
    [63, 71, 136],
    [63, 72, 137],
    [62, 73, 137],
    [62, 74, 137],
    [62, 76, 138],
    [61, 77, 138],
    [61, 78, 138],
    [60, 79, 138],
    [60, 80, 139],
    [59, 81, 139],
    [59, 82, 139],
    [58, 83, 139],
    [58, 84, 140],
    [57, 85, 140],
    [57, 86, 140],
    [56, 88, 140],
    [56, 89, 140],
    [55, 90, 140],
    [55, 91, 141],
    [54, 92, 141],
    [54, 93, 141],
    [53, 94, 141],
    [53, 95, 141],
    [52, 96, 141],
    [52, 97, 141],
    [51, 98, 141],
    [51, 99, 141],
    [50, 100, 142],
    [50, 101, 142],
    [49, 102, 142],
    [49, 103, 142],
    [49, 104, 142],
    [48, 105, 142],
    [48, 106, 142],
    [47, 107, 142],
    [47, 108, 142],
    [46, 109, 142],
    [46, 110, 142],
    [46, 111, 142],
    [45, 112, 142],
    [45, 113, 142],
    [44, 113, 142],
    [44, 114, 142],
    [44, 115, 142],
    [43, 116, 142],
    [43, 117, 142],
    [42, 118, 142],
    [42, 119, 142],
    [42, 120, 142],
    [41, 121, 142],
    [41, 122, 142],
    [41, 123, 142],
    [40, 124, 142],
    [40, 125, 142],
    [39, 126, 142],
    [39, 127, 142],
    [39, 128, 142],
    [38, 129, 142],
    [38, 130, 142],
    [38, 130, 142],
    [37, 131, 142],
    [37, 132, 142],
    [37, 133, 142],
    [36, 134, 142],
    [36, 135, 142],
    [35, 136, 142],
    [35, 137, 142],
    [35, 138, 141],
    [34, 139, 141],
    [34, 140, 141],
    [34, 141, 141],
    [33, 142, 141],
    [33, 143, 141],
    [33, 144, 141],
    [33, 145, 140],
    [32, 146, 140],
    [32, 146, 140],
    [32, 147, 140],
    [31, 148, 140],
    [31, 149, 139],
    [31, 150, 139],
    [31, 151, 139],
    [31, 152, 139],
    [31, 153, 138],
    [31, 154, 138],
    [30, 155, 138],
    [30, 156, 137],
    [30, 157, 137],
    [31, 158, 137],
    [31, 159, 136],
    [31, 160, 136],
    [31, 161, 136],
    [31, 161, 135],
    [31, 162, 135],
    [32, 163, 134],
    [32, 164, 134],
    [33, 165, 133],
    [33, 166, 133],
    [34, 167, 133],
    [34, 168, 132],
    [35, 169, 131],
    [36, 170, 131],
    [37, 171, 130],
    [37, 172, 130],
    [38, 173, 129],
    [39, 173, 129],
    [40, 174, 128],
    [41, 175, 127],
    [42, 176, 127],
    [44, 177, 126],
    [45, 178, 125],
    [46, 179, 124],
    [47, 180, 124],
    [49, 181, 123],
    [50, 182, 122],
    [52, 182, 121],
    [53, 183, 121],
    [55, 184, 120],
    [56, 185, 119],
    [58, 186, 118],
    [59, 187, 117],
    [61, 188, 116],
    [63, 188, 115],
    [64, 189, 114],
    [66, 190, 113],
    [68, 191, 112],
    [70, 192, 111],
    [72, 193, 110],
    [74, 193, 109],
    [76, 194, 108],
    [78, 195, 107],
    [80, 196, 106],
    [82, 197, 105],
    [84, 197, 104],
    [86, 198, 103],
    [88, 199, 101],
    [90, 200, 100],
    [92, 200, 99],
    [94, 201, 98],
    [96, 202, 96],
    [99, 203, 95],
    [101, 203, 94],
    [103, 204, 92],
    [105, 205, 91],
    [108, 205, 90],
    [110, 206, 88],
    [112, 207, 87],
    [115, 208, 86],
    [117, 208, 84],
    [119, 209, 83],
    [122, 209, 81],
    [124, 210, 80],
    [127, 211, 78],
    [129, 211, 77],
    [132, 212, 75],
    [134, 213, 73],
    [137, 213, 72],
    [139, 214, 70],
    [142, 214, 69],
    [144, 215, 67],
    [147, 215, 65],
    [149, 216, 64],
    [152, 216, 62],
    [155, 217, 60],
    [157, 217, 59],
    [160, 218, 57],
    [162, 218, 55],
    [165, 219, 54],
    [168, 219, 52],
    [170, 220, 50],
    [173, 220, 48],
    [176, 221, 47],
    [178, 221, 45],
    [181, 222, 43],
    [184, 222, 41],
    [186, 222, 40],
    [189, 223, 38],
    [192, 223, 37],
    [194, 223, 35],
    [197, 224, 33],
    [200, 224, 32],
    [202, 225, 31],
    [205, 225, 29],
    [208, 225, 28],
    [210, 226, 27],
    [213, 226, 26],
    [216, 226, 25],
    [218, 227, 25],
    [221, 227, 24],
    [223, 227, 24],
    [226, 228, 24],
    [229, 228, 25],
    [231, 228, 25],
    [234, 229, 26],
    [236, 229, 27],
    [239, 229, 28],
    [241, 229, 29],
    [244, 230, 30],
    [246, 230, 32],
    [248, 230, 33],
    [251, 231, 35],
    [253, 231, 37],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_is_five_by_nine() {
        for block in FONT {
            for line in block {
                assert_eq!(line.len(), 8 * (GLYPH_W + 1) - 1, "{line}");
                assert!(line.bytes().all(|b| b"#. ".contains(&b)), "{line}");
            }
        }
        assert_eq!(glyph(' '), [0; GLYPH_H]);
        assert_eq!(glyph('1')[0], 0b00100);
        assert_eq!(glyph('g')[8], 0b01110); // a descender
        assert_ne!(glyph('\u{e9}'), [0; GLYPH_H]); // outside ASCII: a box
    }

    #[test]
    fn ticks_are_round_numbers_inside_the_range() {
        assert_eq!(
            nice_ticks(255.0, 315.0, 6),
            vec![260.0, 270.0, 280.0, 290.0, 300.0, 310.0]
        );
        assert_eq!(nice_ticks(-1.0, 1.0, 4), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(
            index_ticks(480, 480),
            vec![0, 50, 100, 150, 200, 250, 300, 350, 400, 450]
        );
        assert_eq!(index_ticks(400, 400), vec![0, 100, 200, 300]);
        assert_eq!(index_ticks(17, 510), vec![0, 2, 4, 6, 8, 10, 12, 14, 16]);
        assert_eq!(index_ticks(1, 100), vec![0]);
        assert_eq!(format_tick(0.5, 0.5, -1.0, 1.0), "0.5");
        assert_eq!(format_tick(-0.0, 0.5, -1.0, 1.0), "0");
        assert_eq!(format_tick(260.0, 10.0, 255.0, 315.0), "260");
        assert_eq!(format_tick(2.5e-5, 5e-6, 0.0, 3e-5), "2.5e-5");
        assert_eq!(format_tick(3.0e9, 1e9, 0.0, 4e9), "3e9");
    }

    #[test]
    fn a_heat_map_has_its_field_bar_and_title() {
        let (rows, cols) = (6, 10);
        let field: Vec<f64> = (0..rows * cols).map(|i| i as f64).collect();
        let map = HeatMap {
            field: &field,
            rows,
            cols,
            range: None,
            title: "test/field version 1".into(),
            row_label: "axis 0".into(),
            col_label: "axis 1".into(),
        };
        let p = render(&map);
        assert_eq!(p.range, (0.0, 59.0));
        // Whole pixels per cell: 512 / 10 = 51.
        assert_eq!((p.plot.w, p.plot.h), (510, 306));
        let img = &p.image;
        assert_eq!(img.pixel(p.plot.x, p.plot.y), VIRIDIS[0]);
        assert_eq!(
            img.pixel(p.plot.x + p.plot.w - 1, p.plot.y + p.plot.h - 1),
            VIRIDIS[255]
        );
        assert_eq!(img.pixel(p.bar.x + 5, p.bar.y), VIRIDIS[255]);
        assert_eq!(img.pixel(p.bar.x + 5, p.bar.y + p.bar.h - 1), VIRIDIS[0]);
        // Frames, and ink in the title band.
        assert_eq!(img.pixel(p.plot.x - 1, p.plot.y + 3), INK);
        let title_ink = (0..p.plot.y - 1)
            .flat_map(|y| (0..img.width).map(move |x| (x, y)))
            .filter(|&(x, y)| img.pixel(x, y) == INK)
            .count();
        assert!(title_ink > 100, "{title_ink}");
        assert_eq!(img.pixel(0, 0), WHITE);
        let mut png = Vec::new();
        img.encode_png(&mut png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn flat_and_missing_values_are_drawn() {
        let field = [f64::NAN, 5.0, 5.0, 5.0];
        let p = render(&HeatMap {
            field: &field,
            rows: 2,
            cols: 2,
            range: None,
            title: String::new(),
            row_label: String::new(),
            col_label: String::new(),
        });
        assert!(p.range.0 < 5.0 && p.range.1 > 5.0);
        assert_eq!(p.image.pixel(p.plot.x, p.plot.y), MISSING);
        assert_eq!(
            p.image.pixel(p.plot.x + p.plot.w - 1, p.plot.y),
            viridis(0.5)
        );
    }
}
