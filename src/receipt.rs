//! What the till prints: a voucher's QR code as PNG, SVG, terminal text, or an ESC/POS receipt.
//!
//! Owns: QR encoding of the voucher URL and the four renderings. Pure: every function returns
//! bytes or text and writes nothing; the CLI decides where they go. Only in the `pos` build:
//! the router never links QR generation.

use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode};

use crate::duration;
use crate::voucher::Voucher;

/// Pixels per QR module in the PNG. Large enough that a photo or a print stays readable.
const PNG_SCALE: usize = 8;
/// The quiet zone the QR standard asks for, in modules.
const QUIET: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("the voucher URL does not fit in a QR code: {0}")]
    Qr(String),
    #[error("cannot encode the PNG image: {0}")]
    Png(String),
}

/// The QR symbol for `url`. Level M survives a crumpled receipt and keeps the symbol small
/// enough for a 58 mm printer.
pub fn qr(url: &str) -> Result<QrCode, ReceiptError> {
    QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M)
        .map_err(|e| ReceiptError::Qr(e.to_string()))
}

/// A grayscale PNG, black modules on white, with the quiet zone.
pub fn png(url: &str) -> Result<Vec<u8>, ReceiptError> {
    let code = qr(url)?;
    let w = code.width();
    let colors = code.to_colors();
    let side = (w + 2 * QUIET) * PNG_SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % w + QUIET, i / w + QUIET);
        for y in my * PNG_SCALE..(my + 1) * PNG_SCALE {
            pixels[y * side + mx * PNG_SCALE..y * side + (mx + 1) * PNG_SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .map_err(|e| ReceiptError::Png(e.to_string()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| ReceiptError::Png(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| ReceiptError::Png(e.to_string()))?;
    Ok(out)
}

/// A standalone SVG document.
pub fn svg(url: &str) -> Result<String, ReceiptError> {
    Ok(qr(url)?
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

/// The QR drawn with Unicode half blocks (two modules per character cell), dark on light, with
/// its quiet zone, followed by a caption. Scans from a terminal with a light background; on a
/// dark one the quiet zone still frames it.
pub fn terminal(url: &str, v: &Voucher) -> Result<String, ReceiptError> {
    let art = qr(url)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Dark)
        .light_color(unicode::Dense1x2::Light)
        .quiet_zone(true)
        .build();
    Ok(format!("{art}\n{}\n{url}\n", caption(v).join("\n")))
}

/// The human lines printed under the code.
pub fn caption(v: &Voucher) -> Vec<String> {
    let mut lines = vec![
        format!("Wi-Fi for {}", duration::format(u64::from(v.duration_s))),
        format!(
            "Up to {} device{}",
            v.max_devices,
            if v.max_devices == 1 { "" } else { "s" }
        ),
    ];
    if v.redeem_by != 0 {
        lines.push(format!(
            "Use before {}",
            duration::utc_date(i64::from(v.redeem_by))
        ));
    }
    if !v.purchase_ref.is_empty() {
        lines.push(format!("Receipt {}", v.purchase_ref));
    }
    lines
}

/// Thermal paper widths the ESC/POS receipt is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paper {
    Mm58,
    Mm80,
}

impl Paper {
    /// QR module size in printer dots: the symbol must fit 384 (58 mm) or 576 (80 mm) dots.
    fn module_dots(self, modules: usize) -> u8 {
        let dots = match self {
            Paper::Mm58 => 360,
            Paper::Mm80 => 540,
        };
        (dots / (modules + 2 * QUIET)).clamp(1, 16) as u8
    }
}

pub mod escpos {
    //! The ESC/POS commands the receipt uses.
    pub const INIT: &[u8] = &[0x1b, b'@'];
    pub const ALIGN_CENTER: &[u8] = &[0x1b, b'a', 1];
    pub const BIG_ON: &[u8] = &[0x1b, b'!', 0x30];
    pub const BIG_OFF: &[u8] = &[0x1b, b'!', 0x00];
    /// Feed three lines, then a partial cut.
    pub const FEED_AND_CUT: &[u8] = &[0x1d, b'V', 66, 3];

    /// `GS ( k` with its length prefix, for function `fun` of the QR symbol (cn = 49).
    pub fn qr_fn(fun: u8, params: &[u8]) -> Vec<u8> {
        let len = (params.len() + 2) as u16;
        let mut v = vec![0x1d, b'(', b'k', len as u8, (len >> 8) as u8, 49, fun];
        v.extend_from_slice(params);
        v
    }
}

/// An ESC/POS receipt: venue name, the voucher's terms as text, and the QR printed by the
/// printer's native QR command (`GS ( k`: model 2, module size, error level M, store, print),
/// then a cut. Text is sent as ASCII: non-ASCII characters become `?`, since code pages vary
/// between printers.
pub fn escpos(url: &str, v: &Voucher, venue: &str, paper: Paper) -> Result<Vec<u8>, ReceiptError> {
    let modules = qr(url)?.width();
    let mut out = Vec::with_capacity(url.len() + 256);
    out.extend_from_slice(escpos::INIT);
    out.extend_from_slice(escpos::ALIGN_CENTER);
    if !venue.trim().is_empty() {
        out.extend_from_slice(escpos::BIG_ON);
        out.extend_from_slice(ascii_line(venue).as_bytes());
        out.extend_from_slice(escpos::BIG_OFF);
    }
    out.extend_from_slice(b"Wi-Fi voucher\n\n");
    // Model 2, module size, error correction M (49), store the data, print it.
    out.extend_from_slice(&escpos::qr_fn(65, &[50, 0]));
    out.extend_from_slice(&escpos::qr_fn(67, &[paper.module_dots(modules)]));
    out.extend_from_slice(&escpos::qr_fn(69, &[49]));
    let mut store = vec![48];
    store.extend_from_slice(url.as_bytes());
    out.extend_from_slice(&escpos::qr_fn(80, &store));
    out.extend_from_slice(&escpos::qr_fn(81, &[48]));
    out.push(b'\n');
    for line in caption(v) {
        out.extend_from_slice(ascii_line(&line).as_bytes());
    }
    out.extend_from_slice(b"Scan with your phone's camera\nwhile on the venue's Wi-Fi.\n");
    out.extend_from_slice(escpos::FEED_AND_CUT);
    Ok(out)
}

fn ascii_line(s: &str) -> String {
    let mut line: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_module_size_fits_the_paper() {
        for modules in [21, 57, 97] {
            for (paper, dots) in [(Paper::Mm58, 384), (Paper::Mm80, 576)] {
                let n = usize::from(paper.module_dots(modules));
                assert!(n * (modules + 8) <= dots, "{modules} {paper:?}");
            }
        }
    }
}
