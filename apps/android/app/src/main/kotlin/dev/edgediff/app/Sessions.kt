package dev.edgediff.app

import ai.onnxruntime.OnnxJavaType
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.TensorInfo
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.LiteRtException
import com.google.ai.edge.litert.Model
import com.google.ai.edge.litert.TensorBuffer
import com.google.ai.edge.litert.TensorType
import dev.edgediff.core.BundleError
import dev.edgediff.core.ChunkSpec
import dev.edgediff.core.ComponentSpec
import dev.edgediff.core.FloatTensor
import dev.edgediff.core.InferenceSession
import dev.edgediff.core.IntTensor
import dev.edgediff.core.SessionFactory
import dev.edgediff.core.Tensor
import dev.edgediff.core.TensorSpec
import java.nio.FloatBuffer
import java.nio.IntBuffer
import java.nio.LongBuffer

/** Which processor LiteRT compiles for; ONNX Runtime bundles always run on its CPU provider here. */
enum class ComputeUnit(val label: String) { CPU("cpu"), GPU("gpu"), NPU("npu") }

/**
 * LiteRT 2.x CompiledModel sessions. One Environment is shared by every model; each session keeps its input and
 * output TensorBuffers and reuses them across runs. Tensors are addressed by the signature names the manifest
 * records; a model whose names differ (older exports) is fed in manifest order, as the Python runtime does.
 */
class LiteRtSessionFactory(private val unit: ComputeUnit) : SessionFactory, AutoCloseable {
    private val env = Environment.create()

    override fun open(component: ComponentSpec, chunk: ChunkSpec): InferenceSession = try {
        LiteRtSession(chunk)
    } catch (e: LiteRtException) {
        throw BundleError.SessionFailed(component.name, "LiteRT could not compile ${chunk.relativePath} for ${unit.label}: ${e.message}")
    }

    override fun close() = env.close()

    private inner class LiteRtSession(chunk: ChunkSpec) : InferenceSession {
        override val inputs: List<TensorSpec> = chunk.inputs
        override val outputs: List<TensorSpec> = chunk.outputs
        private val model = Model.load(chunk.file.path)
        private val compiled = CompiledModel.create(model, CompiledModel.Options(accelerator()), env)
        // true when the model's signature uses the manifest's names (getInputTensorType throws for unknown names)
        private val byName = runCatching {
            inputs.forEach { model.getInputTensorType(it.name) }
            outputs.forEach { model.getOutputTensorType(it.name) }
            true
        }.getOrDefault(false)
        private val inputTypes = inputs.associate { it.name to (runCatching { model.getInputTensorType(it.name).elementType }.getOrNull()) }
        private val inBuffers: Map<String, TensorBuffer>
        private val outBuffers: Map<String, TensorBuffer>

        init {
            if (byName) {
                inBuffers = inputs.associate { it.name to compiled.createInputBuffer(it.name) }
                outBuffers = outputs.associate { it.name to compiled.createOutputBuffer(it.name) }
            } else {
                val ins = compiled.createInputBuffers()
                val outs = compiled.createOutputBuffers()
                if (ins.size != inputs.size || outs.size != outputs.size) {
                    throw BundleError.SessionFailed(chunk.relativePath, "the model has ${ins.size} inputs / ${outs.size} outputs, the manifest ${inputs.size} / ${outputs.size}")
                }
                inBuffers = inputs.indices.associate { inputs[it].name to ins[it] }
                outBuffers = outputs.indices.associate { outputs[it].name to outs[it] }
            }
        }

        private fun accelerator() = when (unit) {
            ComputeUnit.CPU -> Accelerator.CPU
            ComputeUnit.GPU -> Accelerator.GPU
            ComputeUnit.NPU -> Accelerator.NPU
        }

        override fun run(feeds: Map<String, Tensor>): Map<String, FloatTensor> {
            for (spec in inputs) {
                val buffer = inBuffers.getValue(spec.name)
                when (val t = feeds[spec.name] ?: throw BundleError.SessionFailed("litert", "no feed for ${spec.name}")) {
                    is FloatTensor -> buffer.writeFloat(t.data)
                    is IntTensor -> if (inputTypes[spec.name] == TensorType.ElementType.FLOAT) {
                        buffer.writeFloat(FloatArray(t.count) { t.data[it].toFloat() })
                    } else {
                        buffer.writeInt(t.data)
                    }
                }
            }
            try {
                compiled.run(inBuffers, outBuffers)
            } catch (e: LiteRtException) {
                throw BundleError.SessionFailed("litert", e.message ?: "run failed")
            }
            return outputs.associate { spec ->
                val data = outBuffers.getValue(spec.name).readFloat()
                val shape = if (spec.shape.all { it > 0 }) spec.shape.toIntArray() else intArrayOf(data.size)
                spec.name to FloatTensor(shape, data)
            }
        }

        override fun close() {
            (inBuffers.values + outBuffers.values).forEach { it.close() }
            compiled.close()
            model.close()
        }
    }
}

/** ONNX Runtime (onnxruntime-android) sessions; inputs are cast to the types the graph declares. */
class OrtSessionFactory(private val threads: Int = 0) : SessionFactory {
    private val env = OrtEnvironment.getEnvironment()

    override fun open(component: ComponentSpec, chunk: ChunkSpec): InferenceSession {
        val options = OrtSession.SessionOptions().apply { if (threads > 0) setIntraOpNumThreads(threads) }
        val session = try {
            env.createSession(chunk.file.path, options)
        } catch (e: Exception) {
            throw BundleError.SessionFailed(component.name, "ONNX Runtime could not load ${chunk.relativePath}: ${e.message}")
        }
        return OrtAppSession(session, chunk)
    }

    private inner class OrtAppSession(private val session: OrtSession, chunk: ChunkSpec) : InferenceSession {
        override val inputs: List<TensorSpec> = chunk.inputs
        override val outputs: List<TensorSpec> = chunk.outputs
        private val types = session.inputInfo.mapValues { (_, node) -> (node.info as? TensorInfo)?.type }

        override fun run(feeds: Map<String, Tensor>): Map<String, FloatTensor> {
            val tensors = inputs.associate { spec ->
                val t = feeds[spec.name] ?: throw BundleError.SessionFailed("onnxruntime", "no feed for ${spec.name}")
                val shape = t.shape.map { it.toLong() }.toLongArray()
                spec.name to when {
                    t is FloatTensor -> OnnxTensor.createTensor(env, FloatBuffer.wrap(t.data), shape)
                    t is IntTensor && types[spec.name] == OnnxJavaType.INT64 ->
                        OnnxTensor.createTensor(env, LongBuffer.wrap(LongArray(t.count) { t.data[it].toLong() }), shape)
                    t is IntTensor -> OnnxTensor.createTensor(env, IntBuffer.wrap(t.data), shape)
                    else -> throw BundleError.SessionFailed("onnxruntime", "input ${spec.name}: unsupported tensor")
                }
            }
            try {
                session.run(tensors, outputs.map { it.name }.toSet()).use { result ->
                    return outputs.associate { spec ->
                        val value = result.get(spec.name).orElseThrow { BundleError.SessionFailed("onnxruntime", "no output ${spec.name}") } as OnnxTensor
                        val buffer = value.floatBuffer
                        val data = FloatArray(buffer.remaining()).also { buffer.get(it) }
                        spec.name to FloatTensor(value.info.shape.map { it.toInt() }.toIntArray(), data)
                    }
                }
            } finally {
                tensors.values.forEach { it.close() }
            }
        }

        override fun close() = session.close()
    }
}

/** The session factory for a bundle's backend, or a clear refusal (Core ML bundles are for iOS). */
fun sessionFactoryFor(backend: String, unit: ComputeUnit): SessionFactory = when (backend) {
    "litert" -> LiteRtSessionFactory(unit)
    "onnxruntime" -> OrtSessionFactory()
    else -> throw BundleError.UnsupportedBackend(backend, listOf("litert", "onnxruntime"))
}
