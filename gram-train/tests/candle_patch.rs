//! What the vendored candle-core changes (third_party/candle-core/PATCHED.md).
//!
//! Gradient accumulation: a gradient is stored on its first contribution instead of being
//! added to a zero tensor. It must still be the sum over every path, and come out contiguous
//! when that first contribution was a strided view (a transpose, a broadcast), as the sum
//! upstream always was — a matmul downstream refuses some strides.
//!
//! Float-only unary ops on integer tensors: an error naming the op and dtype, where upstream
//! panicked.

use candle_core::{DType, Device, Result, Tensor, Var};

fn matrix(rows: usize, cols: usize, seed: usize) -> Result<Tensor> {
    let v: Vec<f64> = (0..rows * cols)
        .map(|i| ((i * 7 + seed * 3) % 11) as f64 * 0.25 - 1.0)
        .collect();
    Tensor::from_vec(v, (rows, cols), &Device::Cpu)
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) -> Result<()> {
    let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(diff <= 1e-12, "{what}: off by {diff}");
    Ok(())
}

#[test]
fn gradients_over_several_paths_and_strided_views_add_up() -> Result<()> {
    let x = Var::from_tensor(&matrix(3, 4, 0)?)?;
    let (a, b, c) = (matrix(4, 3, 1)?, matrix(3, 4, 2)?, matrix(3, 1, 3)?);
    // Three paths into x: through a transpose (its gradient arrives as a strided view, first),
    // element-wise, and through a row sum broadcast back.
    let loss = ((x.t()? * &a)?.sum_all()?
        + (x.as_tensor() * &b)?.sum_all()?
        + (x.sum_keepdim(1)? * &c)?.sum_all()?)?;
    let grads = loss.backward()?;
    let g = grads.get(&x).expect("x has a gradient");
    let want = ((a.t()? + &b)? + c.broadcast_as((3, 4))?)?;
    assert_close(g, &want, "∂x over three paths")?;
    assert!(g.is_contiguous(), "∂x strided");

    // One path only, through a transpose: the stored gradient is that view made contiguous,
    // and a matmul takes it.
    let y = Var::from_tensor(&matrix(4, 3, 4)?)?;
    let grads = (y.t()? * &b)?.sum_all()?.backward()?;
    let g = grads.get(&y).expect("y has a gradient");
    assert!(g.is_contiguous(), "∂y strided");
    assert_close(g, &b.t()?, "∂y")?;
    assert_close(&g.matmul(&b)?, &b.t()?.contiguous()?.matmul(&b)?, "∂y·b")?;
    Ok(())
}

#[test]
fn float_only_ops_on_integer_tensors_are_errors() -> Result<()> {
    let x = Tensor::new(&[1u32, 4, 9], &Device::Cpu)?;
    for (name, r) in [("exp", x.exp()), ("sqrt", x.sqrt()), ("neg", x.neg())] {
        let e = r.expect_err(name).to_string();
        assert!(e.contains(name) && e.contains("U32"), "{name}: {e}");
    }
    // What integer tensors do support is unchanged.
    assert_eq!((&x + &x)?.to_vec1::<u32>()?, [2, 8, 18]);
    assert_eq!(
        x.to_dtype(DType::F32)?.sqrt()?.to_vec1::<f32>()?,
        [1.0, 2.0, 3.0]
    );
    Ok(())
}
