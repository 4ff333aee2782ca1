//! Writes a 2-D field as a PNG heat map (blue = cold, red = warm).

use std::path::Path;

/// Writes `field` (`rows x cols`, row 0 at the top) to `path`, colours scaled to `[lo, hi]`.
pub fn write_png(
    path: &Path,
    field: &[f64],
    rows: usize,
    cols: usize,
    lo: f64,
    hi: f64,
) -> std::io::Result<()> {
    let mut rgb = Vec::with_capacity(rows * cols * 3);
    for &t in field {
        let x = ((t - lo) / (hi - lo)).clamp(0.0, 1.0);
        // A simple blue -> cyan -> yellow -> red ramp.
        let (r, g, b) = if x < 1.0 / 3.0 {
            let u = x * 3.0;
            (0.0, u, 1.0)
        } else if x < 2.0 / 3.0 {
            let u = (x - 1.0 / 3.0) * 3.0;
            (u, 1.0, 1.0 - u)
        } else {
            let u = (x - 2.0 / 3.0) * 3.0;
            (1.0, 1.0 - u, 0.0)
        };
        rgb.extend([(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8]);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, cols as u32, rows as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(std::io::Error::other)?;
    w.write_image_data(&rgb).map_err(std::io::Error::other)?;
    Ok(())
}
