//! Buffer upload and readback: the only place that touches mapping and polling.

use crate::device::GpuContext;
use crate::error::GpuError;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use wgpu::util::DeviceExt;

/// Result of a buffer mapping, and who to wake when it arrives.
type MapState = (Option<Result<(), wgpu::BufferAsyncError>>, Option<Waker>);

impl GpuContext {
    pub(crate) fn storage<T: bytemuck::Pod>(
        &self,
        label: &str,
        data: &[T],
        writable: bool,
    ) -> wgpu::Buffer {
        let mut usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        if writable {
            usage |= wgpu::BufferUsages::COPY_SRC;
        }
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage,
            })
    }

    pub(crate) fn uniform<T: bytemuck::Pod>(&self, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    pub(crate) fn output(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    pub(crate) fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        self.bind_with(&pipeline.get_bind_group_layout(0), buffers)
    }

    pub(crate) fn bind_with(
        &self,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout,
            entries: &entries,
        })
    }

    /// Copy `src` back to the host and wait for it.
    pub(crate) async fn read<T: bytemuck::Pod>(
        &self,
        src: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<T>, GpuError> {
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        // A one-shot future completed by the map callback: native backends run the callback
        // inside `poll(Wait)` below; WebGPU runs it from the browser's event loop, so the same
        // code awaits correctly in both (a blocking channel would deadlock a browser tab).
        let signal: Arc<Mutex<MapState>> = Arc::default();
        let cb = signal.clone();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let mut s = cb.lock().unwrap_or_else(|e| e.into_inner());
            s.0 = Some(r);
            if let Some(w) = s.1.take() {
                w.wake();
            }
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| GpuError::Device(e.to_string()))?;
        std::future::poll_fn(|cx| {
            let mut s = signal.lock().unwrap_or_else(|e| e.into_inner());
            match s.0.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    s.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
        .map_err(|e| GpuError::Device(e.to_string()))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Record one compute dispatch.
    pub(crate) fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
        groups: (u32, u32),
    ) {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }
}
