//! Device setup: instance → adapter → device/queue, and the two compute pipelines.

use crate::error::GpuError;

/// A wgpu device with gram's pipelines, ready to score.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) residual: wgpu::ComputePipeline,
    pub(crate) topk: wgpu::ComputePipeline,
    pub(crate) limits: wgpu::Limits,
    info: wgpu::AdapterInfo,
}

impl GpuContext {
    /// Blocking [`GpuContext::new_async`].
    pub fn new() -> Result<GpuContext, GpuError> {
        pollster::block_on(GpuContext::new_async())
    }

    /// The default adapter (high performance preferred), with the adapter's own limits so
    /// large problems need fewer tiles.
    pub async fn new_async() -> Result<GpuContext, GpuError> {
        let instance = wgpu::Instance::default();
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gram"),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        let pipeline = |label: &str, source: &str| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let residual = pipeline("residual", include_str!("shaders/residual.wgsl"));
        let topk = pipeline("topk", include_str!("shaders/topk.wgsl"));
        Ok(GpuContext {
            device,
            queue,
            residual,
            topk,
            limits,
            info,
        })
    }

    /// "name (backend, device type)" of the adapter in use.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }
}
