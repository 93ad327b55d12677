//! Subnormal floats flushed to zero. A gradient carried back through hundreds of steps
//! decays below `f32::MIN_POSITIVE` (2^-126) long before it reaches the first step, and
//! x86 CPUs take a microcode assist, tens to hundreds of cycles, for every operation that
//! reads or writes such a value: the low-rank FastGRNN on sMNIST trained 8.5 times slower
//! with them than without. Values that small change no float32 result a model can show,
//! so the command line sets the CPU's flush-to-zero and denormals-are-zero modes (x86-64
//! MXCSR bits 15 and 6; PyTorch's `torch.set_flush_denormal(True)`) in every thread that
//! computes. On other architectures the modes are left as they are.

/// MXCSR flush-to-zero (FTZ: subnormal results written as zero) and denormals-are-zero
/// (DAZ: subnormal inputs read as zero).
#[cfg(target_arch = "x86_64")]
const FLUSH_TO_ZERO_AND_DENORMALS_ARE_ZERO: u32 = (1 << 15) | (1 << 6);

/// Sets flush-to-zero and denormals-are-zero for the calling thread.
pub fn flush_in_this_thread() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr = 0u32;
        // SAFETY: STMXCSR and LDMXCSR read and write the thread's own SSE control register
        // (present on every x86-64 CPU) through a valid pointer; only the two mode bits
        // change, neither of which unmasks an exception.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= FLUSH_TO_ZERO_AND_DENORMALS_ARE_ZERO;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
    }
}

/// A rayon pool whose threads flush subnormals from their start.
pub fn flushing_pool() -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new().start_handler(|_| flush_in_this_thread())
}

/// Flushes subnormals in the calling thread and in rayon's global pool, which it builds;
/// call it first, before anything has used the global pool (if something has, that pool's
/// threads keep subnormals and the error says so).
pub fn flush_everywhere() -> Result<(), rayon::ThreadPoolBuildError> {
    flush_in_this_thread();
    flushing_pool().build_global()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// Half the smallest normal float: subnormal, unless the thread flushes it to zero.
    fn half_of_smallest_normal() -> f32 {
        black_box(f32::MIN_POSITIVE) * black_box(0.5)
    }

    #[test]
    fn a_thread_keeps_subnormals_until_it_flushes_them() {
        std::thread::spawn(|| {
            assert!(half_of_smallest_normal().is_subnormal());
            flush_in_this_thread();
            if cfg!(target_arch = "x86_64") {
                assert_eq!(half_of_smallest_normal(), 0.0);
                // Denormals-are-zero: a subnormal operand reads as zero.
                let subnormal = f32::from_bits(1);
                assert_eq!(black_box(subnormal) + black_box(0.0), 0.0);
            } else {
                eprintln!("skipped: flushing subnormals is implemented for x86-64 only");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn every_thread_of_a_flushing_pool_flushes() {
        let pool = flushing_pool().num_threads(3).build().unwrap();
        let products: Vec<f32> = pool.broadcast(|_| half_of_smallest_normal());
        assert_eq!(products.len(), 3);
        if cfg!(target_arch = "x86_64") {
            assert!(products.iter().all(|&p| p == 0.0), "{products:?}");
        } else {
            eprintln!("skipped: flushing subnormals is implemented for x86-64 only");
        }
    }
}
