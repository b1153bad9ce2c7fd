package dev.edgediff.core

/**
 * The one thing the pipeline needs from a runtime: named tensors in, named float tensors out. The app has
 * adapters for LiteRT (CompiledModel) and ONNX Runtime Android; the JVM tests drive the same runtimes' C
 * libraries. An adapter casts inputs to the types its model file declares (int64 / int32 ids, float16).
 */
interface InferenceSession : AutoCloseable {
    val inputs: List<TensorSpec>
    val outputs: List<TensorSpec>

    fun run(feeds: Map<String, Tensor>): Map<String, FloatTensor>

    override fun close() {}
}

/** Opens the session of one model file (one chunk of a component). */
fun interface SessionFactory {
    fun open(component: ComponentSpec, chunk: ChunkSpec): InferenceSession
}

/**
 * A component split into several model files: chunk i sees the component's inputs plus every output of the
 * chunks before it, matched by name (as edgediff/runtime/sessions.py ChainedSession).
 */
class ChainedSession(private val component: ComponentSpec, private val parts: List<InferenceSession>) : InferenceSession {
    override val inputs: List<TensorSpec> get() = component.inputs
    override val outputs: List<TensorSpec> get() = component.outputs

    override fun run(feeds: Map<String, Tensor>): Map<String, FloatTensor> {
        val pool = HashMap<String, Tensor>(feeds)
        for (part in parts) {
            val missing = part.inputs.map { it.name }.filter { it !in pool }
            if (missing.isNotEmpty()) {
                throw BundleError.SessionFailed(component.name, "a chunk needs inputs $missing that nothing provides; check the manifest's chunk names")
            }
            pool.putAll(part.run(part.inputs.associate { it.name to pool.getValue(it.name) }))
        }
        return outputs.associate { spec ->
            val value = pool[spec.name] as? FloatTensor
                ?: throw BundleError.SessionFailed(component.name, "no chunk produced output ${spec.name}")
            spec.name to value
        }
    }

    override fun close() = parts.forEach { it.close() }

    companion object {
        /** One session per chunk, chained when there is more than one (or when the chunk's inputs differ). */
        fun open(component: ComponentSpec, factory: SessionFactory): InferenceSession {
            val parts = ArrayList<InferenceSession>()
            try {
                for (chunk in component.chunks) parts += factory.open(component, chunk)
            } catch (e: Throwable) {
                parts.forEach { runCatching { it.close() } }
                throw if (e is BundleError) e else BundleError.SessionFailed(component.name, e.message ?: e.toString())
            }
            return if (parts.size == 1 && parts[0].inputs == component.inputs) parts[0] else ChainedSession(component, parts)
        }
    }
}

/**
 * Where the pipeline gets a component's session: `session` may load it (seconds, the first time); `release` lets
 * it go when the memory plan says components must not stay resident together (Swift `SessionProvider`).
 */
interface SessionProvider : AutoCloseable {
    fun session(component: ComponentSpec): InferenceSession

    fun release(component: String)
}

/** Sessions opened through a factory and kept until released; records each component's load time. */
class ResidentSessions(private val factory: SessionFactory) : SessionProvider {
    private val resident = LinkedHashMap<String, InferenceSession>()

    /** Milliseconds each component's last load took (the benchmark's load_ms). */
    val componentLoadMs = LinkedHashMap<String, Double>()

    val loaded: List<String> get() = resident.keys.sorted()

    override fun session(component: ComponentSpec): InferenceSession = resident[component.name] ?: run {
        val start = System.nanoTime()
        ChainedSession.open(component, factory).also {
            componentLoadMs[component.name] = (System.nanoTime() - start) / 1e6
            resident[component.name] = it
        }
    }

    override fun release(component: String) {
        resident.remove(component)?.let { runCatching { it.close() } }
    }

    override fun close() {
        for (name in resident.keys.toList()) release(name)
    }
}

/** How the three pipeline components are kept in memory (the Swift enum's case names). */
@Suppress("EnumEntryName")
enum class LoadStrategy {
    /** Load each component once and keep it: fastest. */
    allResident,

    /** Load a component, run it, unload it, then the next: fits a smaller budget, reloads every image. */
    oneAtATime,
}

/**
 * The memory plan for a bundle on a device, the same rule in both cores (Swift `MemoryPlan`):
 *
 * - a component needs what the bundle's `memory.components` records for it, else its model files' bytes; the
 *   whole pipeline needs `memory.peak_mb`, else the sum;
 * - the bundle's recorded `memory.plan` decides when it applies, i.e. when the device's budget is unknown or at
 *   least the `budget_mb` it was planned for: "all resident", "sequential" (one at a time), "does not fit" (refused);
 * - otherwise, against the smaller of the two budgets: everything resident when the peak fits, one at a time
 *   when only each component alone fits, and `OverMemoryBudget` when one component alone exceeds it (the rule of
 *   edgediff/bundle.py `memory_entry`).
 */
data class MemoryPlan(val strategy: LoadStrategy, val budgetMB: Double?, val peakMB: Double, val explanation: String) {
    companion object {
        fun plan(manifest: BundleManifest, deviceBudgetMB: Double?): MemoryPlan {
            val memory = manifest.memory
            val needs = LinkedHashMap<String, Double>()
            for (name in BundleManifest.REQUIRED_COMPONENTS) {
                val component = manifest.components[name] ?: continue
                needs[name] = memory?.componentPeakMB?.get(name) ?: (component.bytes / 1_048_576.0)
            }
            val peak = memory?.peakMB ?: needs.values.sum()
            val largest = needs.maxByOrNull { it.value }
            val recordedBudget = memory?.budgetMB
            val recorded = memory?.plan
            if (recorded != null && recordedBudget != null && (deviceBudgetMB == null || deviceBudgetMB >= recordedBudget)) {
                val target = memory.target ?: "its target"
                return when (recorded) {
                    MemorySpec.ALL_RESIDENT -> MemoryPlan(LoadStrategy.allResident, recordedBudget, peak,
                        "The bundle was planned for $target: about ${wholeMB(peak)} MB of its ${wholeMB(recordedBudget)} MB budget; all models stay loaded.")
                    MemorySpec.SEQUENTIAL -> MemoryPlan(LoadStrategy.oneAtATime, recordedBudget, peak, sequentialText(peak, recordedBudget))
                    else -> throw BundleError.OverMemoryBudget(
                        wholeMB(kotlin.math.ceil(largest?.value ?: peak)), wholeMB(kotlin.math.floor(recordedBudget)))
                }
            }
            val budget = listOfNotNull(deviceBudgetMB, recordedBudget).filter { it >= 0 }.minOrNull()
                ?: return MemoryPlan(LoadStrategy.allResident, null, peak, "No memory budget is known for this device; all models stay loaded.")
            if (peak <= budget) {
                return MemoryPlan(LoadStrategy.allResident, budget, peak,
                    "The bundle needs about ${wholeMB(peak)} MB of the ${wholeMB(budget)} MB budget; all models stay loaded.")
            }
            if (largest != null && largest.value > budget) {
                throw BundleError.OverMemoryBudget(wholeMB(kotlin.math.ceil(largest.value)), wholeMB(kotlin.math.floor(budget)))
            }
            return MemoryPlan(LoadStrategy.oneAtATime, budget, peak, sequentialText(peak, budget))
        }

        private fun sequentialText(peak: Double, budget: Double) =
            "The bundle needs about ${wholeMB(peak)} MB with every model loaded but this device allows ${wholeMB(budget)} MB, " +
                "so the text encoder, UNet and VAE decoder are loaded one at a time (slower: each image loads them again)."

        /** Megabytes as a whole number for messages, safe for any Double a manifest can hold. */
        internal fun wholeMB(value: Double): Long = if (!value.isFinite()) 0 else Math.round(value.coerceIn(0.0, 1e12))
    }
}
