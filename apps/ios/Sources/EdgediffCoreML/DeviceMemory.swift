#if canImport(CoreML) && canImport(Darwin)
import Darwin
import EdgediffKit
import Foundation
#if canImport(os)
import os
#endif

/// What the device lets the app use, and what the app has used: the inputs of the memory plan and of the
/// benchmark's `peak_memory_mb`.
public enum DeviceMemory {
    /// Memory kept back for the app itself, its UI and Core ML's working buffers when planning models.
    public static let reserveMB: Double = 400

    /// Megabytes the system will still grant this process before it is terminated for memory (iOS), or nil where
    /// the system does not say (macOS: no per-app limit).
    public static func availableMB() -> Double? {
        #if os(iOS) || os(tvOS) || os(visionOS)
        let bytes = os_proc_available_memory()
        return bytes > 0 ? Double(bytes) / 1_048_576 : nil
        #else
        return nil
        #endif
    }

    /// The budget for models now: what is still available plus what the app already holds, less the reserve.
    /// (Models already loaded count as used; call this before loading.)
    public static func modelBudgetMB() -> Double? {
        guard let available = availableMB() else { return nil }
        return max(0, available + (footprint()?.currentMB ?? 0) - reserveMB)
    }

    /// The process's physical footprint (what iOS terminates on) now and its high-water mark, in MB.
    public static func footprint() -> (currentMB: Double, peakMB: Double)? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let status = withUnsafeMutablePointer(to: &info) { pointer in
            pointer.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { words in
                // task_self_trap(): the mach_task_self_ global is shared mutable state to Swift 6.
                task_info(task_self_trap(), task_flavor_t(TASK_VM_INFO), words, &count)
            }
        }
        guard status == KERN_SUCCESS else { return nil }
        let current = Double(info.phys_footprint) / 1_048_576
        let peak = Double(max(info.ledger_phys_footprint_peak, 0)) / 1_048_576
        return (current, max(current, peak))
    }

    /// Physical memory of the device, in MB.
    public static var physicalMB: Double { Double(ProcessInfo.processInfo.physicalMemory) / 1_048_576 }

    /// The memory plan for `manifest` on this device (see `MemoryPlan`): every model resident when the bundle's
    /// peak fits the budget, one at a time when only each model alone fits, `overMemoryBudget` otherwise.
    public static func plan(for manifest: BundleManifest) throws -> MemoryPlan {
        try MemoryPlan.plan(manifest: manifest, deviceBudgetMB: modelBudgetMB())
    }

    /// `ProcessInfo.thermalState` in the words of the benchmark report.
    public static func thermalState() -> String {
        switch ProcessInfo.processInfo.thermalState {
        case .nominal: return "nominal"
        case .fair: return "fair"
        case .serious: return "serious"
        case .critical: return "critical"
        @unknown default: return "unknown"
        }
    }

    /// The device's model identifier (e.g. "iPhone16,1"), which `edgediff profile --import` requires.
    public static func modelIdentifier() -> String {
        var system = utsname()
        uname(&system)
        let identifier = withUnsafeBytes(of: &system.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        #if targetEnvironment(simulator)
        return ProcessInfo.processInfo.environment["SIMULATOR_MODEL_IDENTIFIER"] ?? identifier
        #else
        return identifier
        #endif
    }
}
#endif
