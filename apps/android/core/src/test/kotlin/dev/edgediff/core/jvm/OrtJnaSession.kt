package dev.edgediff.core.jvm

import com.sun.jna.Function
import com.sun.jna.Memory
import com.sun.jna.NativeLibrary
import com.sun.jna.Pointer
import com.sun.jna.ptr.PointerByReference
import dev.edgediff.core.BundleError
import dev.edgediff.core.ChunkSpec
import dev.edgediff.core.ComponentSpec
import dev.edgediff.core.FloatTensor
import dev.edgediff.core.InferenceSession
import dev.edgediff.core.IntTensor
import dev.edgediff.core.SessionFactory
import dev.edgediff.core.Tensor
import dev.edgediff.core.TensorSpec

/**
 * ONNX Runtime's C API driven through JNA, for running bundles in JVM tests (Maven's onnxruntime jar cannot be
 * installed here; the C library ships in the onnxruntime wheel). `OrtGetApiBase()->GetApi(v)` returns the
 * append-only OrtApi table of function pointers; the slots below are from onnxruntime_c_api.h (version 1
 * part of the table, unchanged since).
 */
class OrtRuntime(libraryPath: String, private val threads: Int = 0) : SessionFactory, AutoCloseable {
    private val lib = NativeLibrary.getInstance(libraryPath)
    private val api: Pointer
    private val env: Pointer
    private val memoryInfo: Pointer
    private val allocator: Pointer

    init {
        val base = lib.getFunction("OrtGetApiBase").invokePointer(emptyArray())
        api = Function.getFunction(base.getPointer(0)).invokePointer(arrayOf(API_VERSION))
            ?: throw BundleError.SessionFailed("onnxruntime", "$libraryPath does not offer C API version $API_VERSION")
        env = out { call(CREATE_ENV, 3 /* ORT_LOGGING_LEVEL_ERROR */, "edgediff-jvm", it) }
        memoryInfo = out { call(CREATE_CPU_MEMORY_INFO, 1 /* OrtArenaAllocator */, 0 /* OrtMemTypeDefault */, it) }
        allocator = out { call(GET_ALLOCATOR_WITH_DEFAULT_OPTIONS, it) }
    }

    private fun fn(slot: Int): Function = Function.getFunction(api.getPointer(slot * 8L))

    internal fun call(slot: Int, vararg args: Any?) {
        val status = fn(slot).invokePointer(args) ?: return
        val message = fn(GET_ERROR_MESSAGE).invokeString(arrayOf(status), false)
        fn(RELEASE_STATUS).invokeVoid(arrayOf(status))
        throw BundleError.SessionFailed("onnxruntime", message)
    }

    internal fun release(slot: Int, handle: Pointer?) {
        if (handle != null) fn(slot).invokeVoid(arrayOf(handle))
    }

    internal inline fun out(block: (PointerByReference) -> Unit): Pointer {
        val ref = PointerByReference()
        block(ref)
        return ref.value
    }

    override fun open(component: ComponentSpec, chunk: ChunkSpec): InferenceSession = OrtJnaSession(chunk)

    override fun close() {
        release(RELEASE_MEMORY_INFO, memoryInfo)
        release(RELEASE_ENV, env)
    }

    /** One model file as an ORT session, addressed by the manifest's tensor names. */
    inner class OrtJnaSession(chunk: ChunkSpec) : InferenceSession {
        override val inputs: List<TensorSpec> = chunk.inputs
        override val outputs: List<TensorSpec> = chunk.outputs
        private val session: Pointer
        private val inputTypes = HashMap<String, Int>()

        init {
            val options = out { call(CREATE_SESSION_OPTIONS, it) }
            try {
                if (threads > 0) call(SET_INTRA_OP_NUM_THREADS, options, threads)
                session = out { call(CREATE_SESSION, env, chunk.file.path, options, it) }
            } finally {
                release(RELEASE_SESSION_OPTIONS, options)
            }
            val count = Memory(8)
            call(SESSION_GET_INPUT_COUNT, session, count)
            for (i in 0 until count.getLong(0)) {
                val namePtr = out { call(SESSION_GET_INPUT_NAME, session, i, allocator, it) }
                val name = namePtr.getString(0, "UTF-8")
                fn(ALLOCATOR_FREE).invokeVoid(arrayOf(allocator, namePtr))
                val typeInfo = out { call(SESSION_GET_INPUT_TYPE_INFO, session, i, it) }
                try {
                    val tensorInfo = out { call(CAST_TYPE_INFO_TO_TENSOR_INFO, typeInfo, it) }
                    val type = Memory(4)
                    call(GET_TENSOR_ELEMENT_TYPE, tensorInfo, type)
                    inputTypes[name] = type.getInt(0)
                } finally {
                    release(RELEASE_TYPE_INFO, typeInfo)
                }
            }
            val unknown = inputs.map { it.name }.filter { it !in inputTypes }
            if (unknown.isNotEmpty()) {
                release(RELEASE_SESSION, session)
                throw BundleError.SessionFailed(chunk.relativePath, "the model has inputs ${inputTypes.keys}, the manifest names $unknown")
            }
        }

        private fun value(name: String, tensor: Tensor, keep: MutableList<Memory>): Pointer {
            val type = inputTypes.getValue(name)
            val n = tensor.count
            val data: Memory = when {
                type == FLOAT && tensor is FloatTensor -> Memory(4L * n).also { it.write(0, tensor.data, 0, n) }
                type == INT64 && tensor is IntTensor -> Memory(8L * n).also { m -> tensor.data.forEachIndexed { i, v -> m.setLong(8L * i, v.toLong()) } }
                type == INT32 && tensor is IntTensor -> Memory(4L * n).also { it.write(0, tensor.data, 0, n) }
                else -> throw BundleError.SessionFailed("onnxruntime", "input $name: element type $type is not supported by the JVM test session")
            }
            keep += data
            val shape = Memory(8L * tensor.shape.size).also { m -> tensor.shape.forEachIndexed { i, d -> m.setLong(8L * i, d.toLong()) } }
            keep += shape
            return out { call(CREATE_TENSOR_WITH_DATA, memoryInfo, data, data.size(), shape, tensor.shape.size.toLong(), type, it) }
        }

        override fun run(feeds: Map<String, Tensor>): Map<String, FloatTensor> {
            val keep = ArrayList<Memory>()
            val values = ArrayList<Pointer>()
            val outputValues = Memory(8L * outputs.size).also { it.clear() }
            try {
                for (spec in inputs) {
                    val t = feeds[spec.name] ?: throw BundleError.SessionFailed("onnxruntime", "no feed for input ${spec.name}")
                    values += value(spec.name, t, keep)
                }
                val inNames = cStrings(inputs.map { it.name }, keep)
                val outNames = cStrings(outputs.map { it.name }, keep)
                val inValues = Memory(8L * values.size).also { m -> values.forEachIndexed { i, v -> m.setPointer(8L * i, v) } }
                call(RUN, session, null, inNames, inValues, values.size.toLong(), outNames, outputs.size.toLong(), outputValues)
                return outputs.indices.associate { i -> outputs[i].name to readFloat(outputValues.getPointer(8L * i)) }
            } finally {
                values.forEach { release(RELEASE_VALUE, it) }
                for (i in outputs.indices) release(RELEASE_VALUE, outputValues.getPointer(8L * i))
            }
        }

        private fun readFloat(value: Pointer): FloatTensor {
            val info = out { call(GET_TENSOR_TYPE_AND_SHAPE, value, it) }
            val shape: IntArray
            val type: Int
            try {
                val rank = Memory(8).also { call(GET_DIMENSIONS_COUNT, info, it) }.getLong(0).toInt()
                val dims = Memory(8L * maxOf(rank, 1))
                call(GET_DIMENSIONS, info, dims, rank.toLong())
                shape = IntArray(rank) { dims.getLong(8L * it).toInt() }
                type = Memory(4).also { call(GET_TENSOR_ELEMENT_TYPE, info, it) }.getInt(0)
            } finally {
                release(RELEASE_TENSOR_TYPE_AND_SHAPE_INFO, info)
            }
            if (type != FLOAT) throw BundleError.SessionFailed("onnxruntime", "output element type $type; the JVM test session reads float32")
            val data = out { call(GET_TENSOR_MUTABLE_DATA, value, it) }
            val n = Tensor.elementCount(shape)
            return FloatTensor(shape, data.getFloatArray(0, n))
        }

        private fun cStrings(names: List<String>, keep: MutableList<Memory>): Memory {
            val table = Memory(8L * names.size)
            names.forEachIndexed { i, name ->
                val bytes = name.toByteArray(Charsets.UTF_8)
                val m = Memory(bytes.size + 1L).also { it.write(0, bytes, 0, bytes.size); it.setByte(bytes.size.toLong(), 0) }
                keep += m
                table.setPointer(8L * i, m)
            }
            keep += table
            return table
        }

        override fun close() = release(RELEASE_SESSION, session)
    }

    companion object {
        private const val API_VERSION = 16 // any ORT >= 1.16 serves it; only version-1 slots are used
        const val GET_ERROR_MESSAGE = 2
        const val CREATE_ENV = 3
        const val CREATE_SESSION = 7
        const val RUN = 9
        const val CREATE_SESSION_OPTIONS = 10
        const val SET_INTRA_OP_NUM_THREADS = 24
        const val SESSION_GET_INPUT_COUNT = 30
        const val SESSION_GET_INPUT_TYPE_INFO = 33
        const val SESSION_GET_INPUT_NAME = 36
        const val CREATE_TENSOR_WITH_DATA = 49
        const val GET_TENSOR_MUTABLE_DATA = 51
        const val CAST_TYPE_INFO_TO_TENSOR_INFO = 55
        const val GET_TENSOR_ELEMENT_TYPE = 60
        const val GET_DIMENSIONS_COUNT = 61
        const val GET_DIMENSIONS = 62
        const val GET_TENSOR_TYPE_AND_SHAPE = 65
        const val CREATE_CPU_MEMORY_INFO = 69
        const val ALLOCATOR_FREE = 76
        const val GET_ALLOCATOR_WITH_DEFAULT_OPTIONS = 78
        const val RELEASE_ENV = 92
        const val RELEASE_STATUS = 93
        const val RELEASE_MEMORY_INFO = 94
        const val RELEASE_SESSION = 95
        const val RELEASE_VALUE = 96
        const val RELEASE_TYPE_INFO = 98
        const val RELEASE_TENSOR_TYPE_AND_SHAPE_INFO = 99
        const val RELEASE_SESSION_OPTIONS = 100

        // ONNXTensorElementDataType
        const val FLOAT = 1
        const val INT32 = 6
        const val INT64 = 7
    }
}
