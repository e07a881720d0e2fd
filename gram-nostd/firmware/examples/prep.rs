//! One `Candidate::new` (k = 3, D = 128) and exit: for instruction traces.
#![no_std]
#![no_main]
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use gram_nostd::{Arithmetic, Candidate};
use panic_semihosting as _;

#[entry]
fn main() -> ! {
    let mut a = [0.0f32; 128];
    let mut b = [0.0f32; 128];
    for i in 0..128 {
        a[i] = (i as f32 * 0.37).sin_approx();
        b[i] = (i as f32 * 0.11 + 1.0).sin_approx();
    }
    let c = Candidate::new_with(Arithmetic::Single, &[&a[..], &b[..]], 128);
    core::hint::black_box(&c);
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}

trait SinApprox {
    fn sin_approx(self) -> f32;
}
impl SinApprox for f32 {
    fn sin_approx(self) -> f32 {
        let x = self - (self / 6.283).floor_approx() * 6.283 - 3.14;
        x - x * x * x / 6.0
    }
}
trait Floor {
    fn floor_approx(self) -> f32;
}
impl Floor for f32 {
    fn floor_approx(self) -> f32 {
        (self as i32) as f32
    }
}
