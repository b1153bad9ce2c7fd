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
