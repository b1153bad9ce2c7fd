package dev.edgediff.app

import android.app.ActivityManager
import android.content.Context
import android.os.Build
import android.os.PowerManager
import java.io.File

/** What the benchmark report says about the phone: model, system, memory, thermal state, peak memory. */
object DeviceProbes {
    fun device(context: Context): Map<String, Any> {
        val am = context.getSystemService(Context.ACTIVITY_SERVICE) as ActivityManager
        val mem = ActivityManager.MemoryInfo().also { am.getMemoryInfo(it) }
        val info = linkedMapOf<String, Any>(
            "model" to Build.MODEL,
            "name" to "${Build.MANUFACTURER} ${Build.MODEL}",
            "system" to "Android ${Build.VERSION.RELEASE} (SDK ${Build.VERSION.SDK_INT})",
            "physical_memory_mb" to mem.totalMem / (1 shl 20),
            "abi" to (Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown"),
        )
        if (Build.VERSION.SDK_INT >= 31) {
            info["chip"] = "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}"
        }
        return info
    }

    /** The process's resident-set high-water mark (VmHWM), in MB: the peak memory the app really used. */
    fun peakMemoryMb(): Double? = runCatching {
        File("/proc/self/status").readLines().firstOrNull { it.startsWith("VmHWM:") }
            ?.split(Regex("\\s+"))?.getOrNull(1)?.toDouble()?.div(1024.0)
    }.getOrNull()

    /** The memory the app may use before Android kills it (the heap limit of a large-heap app is no guide for native memory). */
    fun memoryBudgetMb(context: Context): Long {
        val am = context.getSystemService(Context.ACTIVITY_SERVICE) as ActivityManager
        val mem = ActivityManager.MemoryInfo().also { am.getMemoryInfo(it) }
        return (mem.availMem - mem.threshold).coerceAtLeast(0) / (1 shl 20)
    }

    fun thermalState(context: Context): String? {
        if (Build.VERSION.SDK_INT < 29) return null
        val pm = context.getSystemService(Context.POWER_SERVICE) as PowerManager
        return when (pm.currentThermalStatus) {
            PowerManager.THERMAL_STATUS_NONE -> "none"
            PowerManager.THERMAL_STATUS_LIGHT -> "light"
            PowerManager.THERMAL_STATUS_MODERATE -> "moderate"
            PowerManager.THERMAL_STATUS_SEVERE -> "severe"
            PowerManager.THERMAL_STATUS_CRITICAL -> "critical"
            PowerManager.THERMAL_STATUS_EMERGENCY -> "emergency"
            PowerManager.THERMAL_STATUS_SHUTDOWN -> "shutdown"
            else -> "unknown"
        }
    }
}
