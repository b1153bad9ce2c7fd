package dev.edgediff.core.jvm

import com.sun.jna.Memory
import com.sun.jna.NativeLibrary
import com.sun.jna.Pointer
import com.sun.jna.ptr.PointerByReference
import dev.edgediff.core.BundleError
import dev.edgediff.core.ChunkSpec
import dev.edgediff.core.ComponentSpec
import dev.edgediff.core.FloatTensor
import dev.edgediff.core.ImageSizes
import dev.edgediff.core.InferenceSession
import dev.edgediff.core.IntTensor
import dev.edgediff.core.SessionFactory
import dev.edgediff.core.Tensor
import dev.edgediff.core.TensorSpec

/**
 * LiteRT 2.x's CompiledModel C API (libLiteRt.so from the ai-edge-litert wheel) through JNA: the same API the
 * app's Kotlin CompiledModel wraps on Android. One environment is shared by every model; each model file runs
 * the signature of the feeds' size with managed tensor buffers created from the compiled model's buffer requirements.
 */
class LiteRtRuntime(libraryPath: String, private val accelerators: Int = CPU) : SessionFactory, AutoCloseable {
    private val lib = NativeLibrary.getInstance(libraryPath)
    private val env: Pointer

    init {
        env = out { check("LiteRtCreateEnvironment", 0, null, it) }
    }

    private fun check(name: String, vararg args: Any?) {
        val status = lib.getFunction(name).invokeInt(args)
        if (status != 0) {
            // LiteRtGetStatusString is declared but not exported: keep our own names.
            val meaning = STATUS[status] ?: "status $status"
            throw BundleError.SessionFailed("litert", "$name failed: $meaning")
        }
    }

    private fun void(name: String, handle: Pointer?) {
        if (handle != null) lib.getFunction(name).invokeVoid(arrayOf(handle))
    }

    private inline fun out(block: (PointerByReference) -> Unit): Pointer = PointerByReference().also(block).value

    override fun open(component: ComponentSpec, chunk: ChunkSpec): InferenceSession = LiteRtJnaSession(chunk)

    override fun close() = void("LiteRtDestroyEnvironment", env)

    private class Slot(val name: String, val elementType: Int, val shape: IntArray, val buffer: Pointer, val bytes: Long)

    /** One signature of a model file: its key, tensor buffers and the manifest-name -> position maps. */
    private class Sig(val index: Long, val key: String, val inSlots: List<Slot>, val outSlots: List<Slot>,
                      val inputMap: Map<String, Int>, val outputMap: Map<String, Int>)

    /**
     * A model file's signatures: one, or (a bundle with several sizes) one per size, serving_default the first,
     * size_WxH the others, sharing the weights. Each run goes to the signature whose input shapes are the feeds'
     * (ImageSizes.chooseSignature, as the Python runtime's LiteRTSession picks its runner).
     */
    inner class LiteRtJnaSession(chunk: ChunkSpec) : InferenceSession {
        override val inputs: List<TensorSpec> = chunk.inputs
        override val outputs: List<TensorSpec> = chunk.outputs
        private val model: Pointer = out { check("LiteRtCreateModelFromFile", env, chunk.file.path, it) }
        private val options: Pointer
        private val compiled: Pointer
        private val sigs: List<Sig>

        /** The key of the signature the last run used (what the tests check against the size asked for). */
        var lastSignature: String? = null
            private set

        val signatureKeys: List<String> get() = sigs.map { it.key }

        init {
            options = out { check("LiteRtCreateOptions", it) }
            check("LiteRtSetOptionsHardwareAccelerators", options, accelerators)
            compiled = out { check("LiteRtCreateCompiledModel", env, model, options, it) }
            val count = Memory(8).also { check("LiteRtGetNumModelSignatures", model, it) }.getLong(0)
            sigs = (0 until count).map { index ->
                val signature = out { check("LiteRtGetModelSignature", model, index, it) }
                val key = out { check("LiteRtGetSignatureKey", signature, it) }.getString(0, "UTF-8")
                val ins = slots(signature, index, true)
                val outs = slots(signature, index, false)
                Sig(index, key, ins, outs, mapNames(inputs.map { it.name }, ins.map { it.name }, "inputs", chunk),
                    mapNames(outputs.map { it.name }, outs.map { it.name }, "outputs", chunk))
            }
        }

        private fun slots(signature: Pointer, index: Long, input: Boolean): List<Slot> {
            val kind = if (input) "Input" else "Output"
            val count = Memory(8).also { check("LiteRtGetNumSignature${kind}s", signature, it) }.getLong(0)
            return (0 until count).map { i ->
                val name = out { check("LiteRtGetSignature${kind}Name", signature, i, it) }.getString(0, "UTF-8")
                val tensor = out { check("LiteRtGetSignature${kind}TensorByIndex", signature, i, it) }
                val type = Memory(72).also { it.clear(); check("LiteRtGetRankedTensorType", tensor, it) }
                val rank = type.getInt(4) and 0x7f
                val shape = IntArray(rank) { type.getInt(8L + 4 * it) }
                val requirements = out { check("LiteRtGetCompiledModel${kind}BufferRequirements", compiled, index, i, it) }
                val buffer = out { check("LiteRtCreateManagedTensorBufferFromRequirements", env, type, requirements, it) }
                val size = Memory(8).also { check("LiteRtGetTensorBufferPackedSize", buffer, it) }.getLong(0)
                Slot(name, type.getInt(0), shape, buffer, size)
            }
        }

        /** Manifest names to signature positions: by name when they all match, else by natural order of names
         *  (litert-torch calls exported arguments args_0, args_1, ...), as edgediff/runtime/sessions.py does. */
        private fun mapNames(names: List<String>, signature: List<String>, what: String, chunk: ChunkSpec): Map<String, Int> {
            if (signature.containsAll(names)) return names.associateWith { signature.indexOf(it) }
            if (names.size != signature.size) {
                throw BundleError.SessionFailed(chunk.relativePath, "the model has ${signature.size} signature $what $signature, the manifest lists $names")
            }
            val natural = signature.indices.sortedWith { a, b -> naturalCompare(signature[a], signature[b]) }
            return names.indices.associate { names[it] to natural[it] }
        }

        override fun run(feeds: Map<String, Tensor>): Map<String, FloatTensor> {
            val names = inputs.map { it.name }
            val given = names.map { name -> (feeds[name] ?: throw BundleError.SessionFailed("litert", "no feed for input $name")).shape }
            val sig = sigs[ImageSizes.chooseSignature(sigs.map { s -> s.key to names.map { s.inSlots[s.inputMap.getValue(it)].shape } }, given)]
            for ((name, index) in sig.inputMap) write(sig.inSlots[index], feeds.getValue(name))
            val ins = Memory(8L * sig.inSlots.size).also { m -> sig.inSlots.forEachIndexed { i, s -> m.setPointer(8L * i, s.buffer) } }
            val outs = Memory(8L * sig.outSlots.size).also { m -> sig.outSlots.forEachIndexed { i, s -> m.setPointer(8L * i, s.buffer) } }
            check("LiteRtRunCompiledModel", compiled, sig.index, sig.inSlots.size.toLong(), ins, sig.outSlots.size.toLong(), outs)
            lastSignature = sig.key
            return sig.outputMap.mapValues { (_, index) -> read(sig.outSlots[index]) }
        }

        private fun write(slot: Slot, tensor: Tensor) {
            if (tensor.count.toLong() * 4 != slot.bytes) {
                throw BundleError.SessionFailed("litert", "input ${slot.name} takes ${slot.bytes} bytes, got ${tensor.shapeString()}")
            }
            val ptr = out { check("LiteRtLockTensorBuffer", slot.buffer, it, LOCK_WRITE) }
            try {
                when {
                    slot.elementType == F32 && tensor is FloatTensor -> ptr.write(0, tensor.data, 0, tensor.count)
                    slot.elementType == I32 && tensor is IntTensor -> ptr.write(0, tensor.data, 0, tensor.count)
                    else -> throw BundleError.SessionFailed("litert", "input ${slot.name}: element type ${slot.elementType} is not supported by the JVM test session")
                }
            } finally {
                check("LiteRtUnlockTensorBuffer", slot.buffer)
            }
        }

        private fun read(slot: Slot): FloatTensor {
            if (slot.elementType != F32) throw BundleError.SessionFailed("litert", "output ${slot.name} has element type ${slot.elementType}, not float32")
            val ptr = out { check("LiteRtLockTensorBuffer", slot.buffer, it, LOCK_READ) }
            try {
                return FloatTensor(slot.shape, ptr.getFloatArray(0, (slot.bytes / 4).toInt()))
            } finally {
                check("LiteRtUnlockTensorBuffer", slot.buffer)
            }
        }

        override fun close() {
            sigs.flatMap { it.inSlots + it.outSlots }.forEach { void("LiteRtDestroyTensorBuffer", it.buffer) }
            void("LiteRtDestroyCompiledModel", compiled)
            void("LiteRtDestroyOptions", options)
            void("LiteRtDestroyModel", model)
        }
    }

    companion object {
        const val CPU = 1
        const val GPU = 2
        const val NPU = 4
        private const val F32 = 1
        private const val I32 = 2
        private const val LOCK_READ = 0
        private const val LOCK_WRITE = 1
        private val STATUS = mapOf(1 to "invalid argument", 3 to "runtime failure", 500 to "file I/O error")

        fun naturalCompare(a: String, b: String): Int {
            val pa = Regex("\\d+|\\D+").findAll(a).map { it.value }.toList()
            val pb = Regex("\\d+|\\D+").findAll(b).map { it.value }.toList()
            for (i in 0 until minOf(pa.size, pb.size)) {
                val x = pa[i]
                val y = pb[i]
                val c = if (x[0].isDigit() && y[0].isDigit()) x.toBigInteger().compareTo(y.toBigInteger()) else x.compareTo(y)
                if (c != 0) return c
            }
            return pa.size.compareTo(pb.size)
        }
    }
}
