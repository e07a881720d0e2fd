//! The training loop runs on a worker of rayon's pool (`process::run_on_pool`): that thread
//! must have the stack a training step needs. Candle's backward pass walks the graph
//! recursively, one frame per op of the longest chain: on a worker with rayon's default 2 MiB
//! stack this test overflowed it (aborting the process).

use candle_core::{Device, Tensor, Var};

#[test]
fn a_deep_graph_backpropagates_on_the_pool() {
    gram_train::process::configure();
    let depth = 20_000;
    let g = gram_train::process::run_on_pool(|| {
        let x = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut y: Tensor = x.as_tensor().clone();
        for _ in 0..depth {
            y = (y * 1.0).unwrap();
        }
        let grads = y.sum_all().unwrap().backward().unwrap();
        grads.get(&x).unwrap().to_vec1::<f32>().unwrap()
    });
    assert_eq!(g, vec![1.0, 1.0]);
}
