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
            return FloatTensor(shape, data)
        }

        fun readI32(file: File, shape: IntArray, name: String = file.name): IntTensor {
            val buf = readRaw(file, shape, name).asIntBuffer()
            val data = IntArray(buf.remaining()).also { buf.get(it) }
            return IntTensor(shape, data)
        }
    }
}

class FloatTensor(shape: IntArray, val data: FloatArray) : Tensor(shape) {
    init {
        require(data.size == elementCount(shape)) { "FloatTensor: ${data.size} values for shape ${shape.joinToString()}" }
    }

    /** Rows [from, to) of the first axis (splitting a batched UNet output into its CFG halves). */
    fun slice0(from: Int, to: Int): FloatTensor {
        val per = count / shape[0]
        val newShape = shape.copyOf().also { it[0] = to - from }
        return FloatTensor(newShape, data.copyOfRange(from * per, to * per))
    }

    fun toLittleEndianBytes(): ByteArray {
        val buf = ByteBuffer.allocate(data.size * 4).order(ByteOrder.LITTLE_ENDIAN)
        buf.asFloatBuffer().put(data)
        return buf.array()
    }

    companion object {
        /** Stack tensors of equal shape [1, ...] along axis 0 (the CFG batch: uncond first, then cond). */
        fun concat0(parts: List<FloatTensor>): FloatTensor {
            val first = parts.first()
            val per = first.count / first.shape[0]
            val rows = parts.sumOf { it.shape[0] }
            val out = FloatArray(rows * per)
            var offset = 0
            for (p in parts) {
                require(p.count / p.shape[0] == per) { "concat0: shapes ${first.shapeString()} and ${p.shapeString()} differ" }
                p.data.copyInto(out, offset)
                offset += p.data.size
            }
            return FloatTensor(first.shape.copyOf().also { it[0] = rows }, out)
        }
    }
}

class IntTensor(shape: IntArray, val data: IntArray) : Tensor(shape) {
    init {
        require(data.size == elementCount(shape)) { "IntTensor: ${data.size} values for shape ${shape.joinToString()}" }
    }
}
