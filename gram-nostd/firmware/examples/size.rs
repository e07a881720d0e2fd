//! The code size of an application using gram-nostd's entry points (volume, candidate
//! preparation and loading, scoring in both arithmetics, the loss) and nothing else but
//! integer printing: prints its own `.text` size and exits. `cargo run --release --example size`.
#![no_std]
#![no_main]

use core::hint::black_box;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use gram_nostd::{Arithmetic, Candidate, gram_loss, score_row_with, volume};
use panic_semihosting as _;

unsafe extern "C" {
    static __stext: u8;
    static __etext: u8;
}

#[entry]
fn main() -> ! {
    let a: [f32; 8] = black_box([1.0, 0.5, -0.25, 0.0, 3.0, 0.1, 0.2, 0.3]);
    let m1: [f32; 8] = black_box([-0.7, 0.2, 1.5, 1.0, -0.4, 0.0, 0.3, 0.1]);
    let m2: [f32; 8] = black_box([0.1, 0.9, -1.5, 2.0, 0.3, 0.5, 0.0, 0.2]);
    let v = volume(&[&a[..], &m1, &m2]).unwrap_or(0.0);
    let c = Candidate::new(&[&m1[..], &m2], 8).unwrap();
    let mut bytes = [0u8; Candidate::bytes_len(2)];
    let _ = c.to_bytes(&mut bytes);
    let c = Candidate::from_bytes(black_box(&bytes)).unwrap();
    let mut out = [0.0f32; 2];
    for arithmetic in [Arithmetic::Single, Arithmetic::Double] {
        let _ = score_row_with(
            arithmetic,
            &a,
            &[&m1[..8], &m2[..8]],
            core::slice::from_ref(&c),
            &mut out[..1],
        );
    }
    let l = gram_loss(&[0.25f32; 4], 2, 0.07, 0.1, None)
        .map(|l| l.loss)
        .unwrap_or(0.0);
    black_box((v, out, l));
    let text = core::ptr::addr_of!(__etext) as usize - core::ptr::addr_of!(__stext) as usize;
    hprintln!("size example: .text {} bytes", text);
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}
