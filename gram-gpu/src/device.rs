//! Device setup: instance → adapter → device/queue, the top-k pipeline, and the fused volume
//! kernel's pipelines, compiled on first use for each k (see [`crate::kernel`]).

use crate::error::GpuError;
use crate::kernel::{KernelVariant, Specialisation};
use std::collections::HashMap;
use std::sync::Mutex;

/// A wgpu device with gram's pipelines, ready to score.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) topk: wgpu::ComputePipeline,
    pub(crate) limits: wgpu::Limits,
    volume_layout: wgpu::BindGroupLayout,
    volume_pipelines: Mutex<HashMap<Specialisation, wgpu::ComputePipeline>>,
    refine_pipelines: Mutex<HashMap<usize, wgpu::ComputePipeline>>,
    info: wgpu::AdapterInfo,
    /// Whether shaders may use f64 (the refinement pass needs it).
    f64: bool,
    /// The adapter's subgroup size where subgroups are enabled and of one fixed size, else 0.
    subgroup: u32,
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
        // Native only: naga takes subgroup builtins without WGSL's `enable subgroups;` (it
        // refuses the directive), browsers require it. The page keeps the plain loops.
        // f64 likewise (WebGPU has none): for the refinement pass.
        let features = if cfg!(target_arch = "wasm32") {
            wgpu::Features::empty()
        } else {
            adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F64)
        };
        let f64 = features.contains(wgpu::Features::SHADER_F64);
        let features_sg = features & wgpu::Features::SUBGROUP;
        let subgroup = if features_sg.is_empty() || info.subgroup_min_size != info.subgroup_max_size
        {
            0
        } else {
            info.subgroup_min_size
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gram"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("topk"),
            source: wgpu::ShaderSource::Wgsl(include_str!("shaders/topk.wgsl").into()),
        });
        let topk = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("topk"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let volume_layout = volume_bind_group_layout(&device);
        Ok(GpuContext {
            device,
            queue,
            topk,
            limits,
            volume_layout,
            volume_pipelines: Mutex::default(),
            refine_pipelines: Mutex::default(),
            info,
            f64,
            subgroup,
        })
    }

    /// "name (backend, device type)" of the adapter in use.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// The fused kernel's variant for k − 1 = `m` on this adapter (or the one `forced` asks).
    pub(crate) fn specialisation(
        &self,
        m: usize,
        raw: bool,
        forced: Option<KernelVariant>,
    ) -> Specialisation {
        let cpu_type = self.info.device_type == wgpu::DeviceType::Cpu;
        let (cpu_type, subgroup) = match forced {
            None => (cpu_type, self.subgroup),
            Some(KernelVariant::Staged) => (false, 0),
            Some(KernelVariant::Direct) => (true, 0),
            Some(KernelVariant::DirectSubgroup) => (true, self.subgroup),
        };
        Specialisation::for_adapter(
            cpu_type,
            self.limits.max_compute_workgroup_storage_size,
            subgroup,
            m,
            raw,
        )
    }

    /// Whether the adapter runs on the CPU (lavapipe, SwiftShader).
    pub(crate) fn cpu_type(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether shaders may use f64 here (native adapters that have it; never in a browser):
    /// what the refinement pass of failed pairs needs.
    pub fn has_f64(&self) -> bool {
        self.f64
    }

    /// The refinement pass for k − 1 = `m`, compiled on first use (with naga's checks).
    /// Only on adapters with f64 ([`GpuContext::has_f64`]).
    pub(crate) fn refine_pipeline(&self, m: usize) -> wgpu::ComputePipeline {
        let mut cache = self
            .refine_pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cache
            .entry(m)
            .or_insert_with(|| {
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some("refine"),
                        source: wgpu::ShaderSource::Wgsl(crate::kernel::refine_source(m).into()),
                    });
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some("refine"),
                        layout: None,
                        module: &module,
                        entry_point: Some("main"),
                        compilation_options: Default::default(),
                        cache: None,
                    })
            })
            .clone()
    }

    /// The pipeline of `spec`, compiled on first use.
    pub(crate) fn volume_pipeline(&self, spec: &Specialisation) -> wgpu::ComputePipeline {
        let mut cache = self
            .volume_pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(spec) {
            return p.clone();
        }
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some("volume"),
            source: wgpu::ShaderSource::Wgsl(spec.source().into()),
        };
        // SAFETY: every index the kernel forms is in range by construction — blocks are
        // zero-padded to whole workgroup tiles and D to whole K-steps (scorer.rs), outputs are
        // written only below `rows`/`cols`, `flagged` only below `cap` — and every loop
        // bound is a constant or a uniform. naga's per-access checks cost ≈1.5× there.
        // Browsers apply their own checks regardless.
        let module = unsafe {
            self.device
                .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
        };
        let layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("volume"),
                bind_group_layouts: &[Some(&self.volume_layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("volume"),
                layout: Some(&layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    // The staged tiles are written in full before every read.
                    zero_initialize_workgroup_memory: false,
                    ..Default::default()
                },
                cache: None,
            });
        cache.insert(*spec, pipeline.clone());
        pipeline
    }

    pub(crate) fn volume_bind(&self, buffers: &[&wgpu::Buffer; 7]) -> wgpu::BindGroup {
        self.bind_with(&self.volume_layout, buffers)
    }
}

/// Bindings of `volume_common.wgsl`: uniform params, four read-only inputs, the output and
/// the flagged list. Explicit (not derived from the shader) because the reference-GEMM
/// variant leaves some of them unused.
fn volume_bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let read = wgpu::BufferBindingType::Storage { read_only: true };
    let write = wgpu::BufferBindingType::Storage { read_only: false };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("volume"),
        entries: &[
            entry(0, wgpu::BufferBindingType::Uniform),
            entry(1, read),
            entry(2, read),
            entry(3, read),
            entry(4, read),
            entry(5, write),
            entry(6, write),
        ],
    })
}
