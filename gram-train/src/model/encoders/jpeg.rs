//! JPEG decoding as Pillow does it: libjpeg-turbo's decoder (through `mozjpeg`, its fork with
//! the same decoder), accurate integer IDCT, fancy chroma upsampling, its YCbCr → RGB tables;
//! grey replicated to RGB. Bit-identical to `PIL.Image.open(f).convert("RGB")` (tested on real
//! photos in tests/hf_parity.rs).
//!
//! libjpeg reports fatal errors and warnings (truncated or corrupt data, which it would
//! otherwise fill with grey) through its error manager; here both end the decode with an error.

use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error};
use std::os::raw::c_int;

/// Ends the decode: libjpeg's `error_exit` must not return, so it unwinds (through libjpeg's C
/// frames, which mozjpeg-sys builds for that: its `unwinding` feature) to the `catch_unwind`
/// in [`decode_rgb`]. `resume_unwind` skips the panic hook: nothing is printed.
extern "C-unwind" fn fail(_cinfo: &mut jpeg_common_struct) {
    std::panic::resume_unwind(Box::new("corrupt or unsupported JPEG data"));
}

/// Level −1 is a warning (e.g. "premature end of JPEG file"): fail as Pillow does on a
/// truncated file. Trace messages (level ≥ 0) are ignored.
extern "C-unwind" fn on_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    if level < 0 {
        fail(cinfo);
    }
}

fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a plain C struct for which all-zero is a valid value (null
    // function pointers and tables); jpeg_std_error fills every field it uses.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    // SAFETY: `err` is a valid, exclusively borrowed error manager.
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(fail);
    err.emit_message = Some(on_message);
    err
}

/// RGB pixels (row-major, `[width·height·3]`) and the size of a JPEG file; `None` when it is a
/// CMYK/YCCK JPEG, which libjpeg does not turn into RGB (the caller's other decoder does).
pub fn decode_rgb(bytes: &[u8]) -> Result<Option<(Vec<u8>, usize, usize)>, String> {
    let run = || -> std::io::Result<Option<(Vec<u8>, usize, usize)>> {
        let d = mozjpeg::Decompress::with_err(error_manager()).from_mem(bytes)?;
        if matches!(
            d.color_space(),
            mozjpeg_sys::J_COLOR_SPACE::JCS_CMYK | mozjpeg_sys::J_COLOR_SPACE::JCS_YCCK
        ) {
            return Ok(None);
        }
        let (w, h) = (d.width(), d.height());
        let mut started = d.rgb()?;
        let px: Vec<[u8; 3]> = started.read_scanlines()?;
        started.finish()?;
        Ok(Some((px.concat(), w, h)))
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("JPEG: {e}")),
        Err(payload) => Err(format!(
            "JPEG: {}",
            payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("corrupt data")
        )),
    }
}
