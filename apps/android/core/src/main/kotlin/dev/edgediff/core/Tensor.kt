package dev.edgediff.core

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Named tensors the pipeline passes between sessions: a shape plus flat row-major data. Float and int are the
 * only kinds a bundle's components exchange (token ids in, float activations out); a session casts to the
 * exact type its model file declares (int64 ids for ONNX, int32 for LiteRT, float16 for fp16 models).
 *
 * The golden files store tensors as raw little-endian `.f32` / `.i32` files, read with `readF32` / `readI32`.
 */
sealed class Tensor(shape: IntArray) {
    val shape: IntArray = shape.copyOf()
    val count: Int get() = shape.fold(1) { acc, d -> acc * d }

    fun shapeString(): String = shape.joinToString(prefix = "[", postfix = "]")

    companion object {
        /** Elements of `shape`; refuses negative dimensions and overflow (a hostile golden file could ask for 2^40). */
        fun elementCount(shape: IntArray, name: String = "tensor"): Int {
            var total = 1L
            for (d in shape) {
                if (d < 0) throw BundleError.InvalidTensor(name, "negative dimension in ${shape.joinToString()}")
                total *= d
                if (total > Int.MAX_VALUE) throw BundleError.InvalidTensor(name, "shape ${shape.joinToString()} is too large")
            }
            return total.toInt()
        }

        private fun readRaw(file: File, shape: IntArray, name: String): ByteBuffer {
            val count = elementCount(shape, name)
            if (!file.isFile) throw BundleError.MissingFile(file.path)
            val expected = count.toLong() * 4
            if (file.length() != expected) {
                throw BundleError.SizeMismatch(file.path, expected, file.length())
            }
            return ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN)
        }

        fun readF32(file: File, shape: IntArray, name: String = file.name): FloatTensor {
            val buf = readRaw(file, shape, name).asFloatBuffer()
            val data = FloatArray(buf.remaining()).also { buf.get(it) }
            return FloatTensor(shape, data, name)
        }

        fun readI32(file: File, shape: IntArray, name: String = file.name): IntTensor {
            val buf = readRaw(file, shape, name).asIntBuffer()
            val data = IntArray(buf.remaining()).also { buf.get(it) }
            return IntTensor(shape, data, name)
        }
    }
}

/** A float32 tensor; throws `InvalidTensor` when `data` does not hold exactly the elements `shape` describes. */
class FloatTensor(shape: IntArray, val data: FloatArray, name: String = "tensor") : Tensor(shape) {
    init {
        if (data.size != elementCount(shape, name)) throw BundleError.InvalidTensor(name, "${data.size} values for shape ${shapeString()}")
    }

    /** Rows [from, to) of the first axis (splitting a batched UNet output into its CFG halves). */
    fun slice0(from: Int, to: Int): FloatTensor {
        val rows = shape.firstOrNull() ?: 0
        if (rows <= 0 || from < 0 || from >= to || to > rows) throw BundleError.InvalidTensor("slice", "rows $from..<$to of shape ${shapeString()}")
        val per = count / rows
        val newShape = shape.copyOf().also { it[0] = to - from }
        return FloatTensor(newShape, data.copyOfRange(from * per, to * per))
    }

    fun toLittleEndianBytes(): ByteArray {
        val buf = ByteBuffer.allocate(data.size * 4).order(ByteOrder.LITTLE_ENDIAN)
        buf.asFloatBuffer().put(data)
        return buf.array()
    }

    companion object {
        /** Stack tensors of equal trailing shape along axis 0 (the CFG batch: uncond first, then cond). */
        fun concat0(parts: List<FloatTensor>): FloatTensor {
            val first = parts.firstOrNull()?.takeIf { (it.shape.firstOrNull() ?: 0) > 0 }
                ?: throw BundleError.InvalidTensor("concat0", "nothing to stack")
            val trailing = first.shape.drop(1)
            for (p in parts) {
                if (p.shape.isEmpty() || p.shape.drop(1) != trailing) {
                    throw BundleError.InvalidTensor("concat0", "shapes ${first.shapeString()} and ${p.shapeString()} differ")
                }
            }
            val out = FloatArray(parts.sumOf { it.data.size })
            var offset = 0
            for (p in parts) {
                p.data.copyInto(out, offset)
                offset += p.data.size
            }
            return FloatTensor(first.shape.copyOf().also { it[0] = parts.sumOf { p -> p.shape[0] } }, out)
        }
    }
}

/** An int32 tensor (token ids); throws `InvalidTensor` on a size mismatch, as FloatTensor. */
class IntTensor(shape: IntArray, val data: IntArray, name: String = "tensor") : Tensor(shape) {
    init {
        if (data.size != elementCount(shape, name)) throw BundleError.InvalidTensor(name, "${data.size} values for shape ${shapeString()}")
    }
}
