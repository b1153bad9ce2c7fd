package dev.edgediff.core

import org.json.JSONArray
import org.json.JSONObject

/**
 * One image size a bundle makes, in pixels. Written WIDTHxHEIGHT as users type it and as edgediff names LiteRT
 * signatures; kept as (height, width) like the manifest's `pipeline.sizes` (edgediff/runtime/sizes.py).
 */
data class ImageSize(val height: Int, val width: Int) {
    val name: String get() = "${width}x$height"

    override fun toString(): String = name

    /** The LiteRT signature holding this size in a bundle whose first size is `first` (edgediff/model/sizes.py). */
    fun signature(first: ImageSize): String = if (this == first) DEFAULT_SIGNATURE else SIGNATURE_PREFIX + name

    companion object {
        const val DEFAULT_SIGNATURE = "serving_default"
        const val SIGNATURE_PREFIX = "size_"
        const val MAX_SIDE = 1 shl 14

        /** "64x64, 96x64 (width x height)": how both cores and the CLI list a bundle's sizes. */
        fun describe(sizes: List<ImageSize>): String = sizes.joinToString { it.name } + " (width x height)"
    }
}

/**
 * The sizes of a bundle and the rules every size request goes through, the same in both cores (Swift
 * `ImageSizes`) and in the Python runtime: the first size is pipeline.height x width (the latent shape's); a bundle
 * converted with several sizes lists them all in `pipeline.sizes`; a size it lacks is refused naming the ones it has.
 */
object ImageSizes {
    /** `pipeline.sizes` checked as runtime/sizes.py checks it; absent: the one size the latent shape gives. */
    internal fun parse(node: JsonNode, latent: IntArray, height: Int?, width: Int?): List<ImageSize> {
        val factor = if (height != null && height > 0 && height % latent[2] == 0) height / latent[2] else 8
        val first = ImageSize(height ?: latent[2] * factor, width ?: latent[3] * factor)
        val raw = node.raw("sizes")
        if (raw == null || raw == JSONObject.NULL) return listOf(first)
        val expected = "a non-empty list of [height, width] pixel pairs (integers 8..${ImageSize.MAX_SIDE}), the first " +
            "pipeline.height x width, no size twice"
        val list = raw as? JSONArray ?: throw BundleError.InvalidManifest("pipeline.sizes", expected)
        val sizes = (0 until list.length()).map { i ->
            val pair = list.opt(i) as? JSONArray
            val values = (0 until (pair?.length() ?: 0)).mapNotNull { JsonNode.asInt(pair!!.opt(it))?.takeIf { v -> v in 8..ImageSize.MAX_SIDE } }
            if (pair == null || pair.length() != 2 || values.size != 2) throw BundleError.InvalidManifest("pipeline.sizes[$i]", expected)
            ImageSize(values[0], values[1])
        }
        if (sizes.isEmpty() || height == null || width == null || sizes[0] != first || sizes.toSet().size != sizes.size) {
            throw BundleError.InvalidManifest("pipeline.sizes", expected)
        }
        for (size in sizes) {
            if (size.height % factor != 0 || size.width % factor != 0) {
                throw BundleError.InvalidManifest("pipeline.sizes", "sizes that are multiples of the latent factor $factor ($size is not)")
            }
        }
        return sizes
    }

    /** Pixels per latent cell (the VAE's downscale, 8 for Stable Diffusion). */
    fun latentFactor(manifest: BundleManifest): Int {
        val first = manifest.pipeline.sizes.first()
        return maxOf(1, first.height / manifest.pipeline.latentShape[2])
    }

    /** The requested size if the bundle makes it; its first size when neither side is given. */
    fun pick(manifest: BundleManifest, height: Int?, width: Int?): ImageSize {
        val sizes = manifest.pipeline.sizes
        if (height == null && width == null) return sizes.first()
        val have = ImageSize.describe(sizes)
        if (height == null || width == null) throw BundleError.UnsupportedSize("${width ?: "?"}x${height ?: "?"}", "give both height and width; this bundle makes $have")
        val wanted = ImageSize(height, width)
        val factor = latentFactor(manifest)
        if (height <= 0 || width <= 0 || height % factor != 0 || width % factor != 0) {
            throw BundleError.UnsupportedSize(wanted.name, "not a positive multiple of $factor (the latent factor); this bundle makes $have")
        }
        if (wanted !in sizes) {
            throw BundleError.UnsupportedSize(wanted.name, "this bundle makes $have; convert with --size ${wanted.name} to get it")
        }
        return wanted
    }

    /** [1, channels, height / factor, width / factor]: the latent of one image at `size`. */
    fun latentShape(manifest: BundleManifest, size: ImageSize): IntArray {
        val base = manifest.pipeline.latentShape
        val factor = latentFactor(manifest)
        return intArrayOf(base[0], base[1], size.height / factor, size.width / factor)
    }

    /**
     * Which of a LiteRT model's signatures takes inputs of these shapes (`signatures`: name -> its input shapes in
     * feed order; `feeds` in the same order): a bundle with several sizes holds one signature per size, weights
     * shared, and a run goes to the one of its size, as the Python runtime's LiteRTSession does. One signature:
     * always that one (the runtime reports a wrong shape itself).
     */
    fun chooseSignature(signatures: List<Pair<String, List<IntArray>>>, feeds: List<IntArray>): Int {
        if (signatures.size <= 1) return 0
        val index = signatures.indexOfFirst { (_, shapes) -> shapes.size == feeds.size && shapes.indices.all { shapes[it].contentEquals(feeds[it]) } }
        if (index >= 0) return index
        val spatial = { shapes: List<IntArray> -> shapes.filter { it.size == 4 }.joinToString { it.joinToString(prefix = "[", postfix = "]") } }
        throw BundleError.UnsupportedSize(
            spatial(feeds),
            "the model has no signature for these inputs; its signatures take " +
                signatures.joinToString("; ") { (name, shapes) -> "$name ${spatial(shapes)}" },
        )
    }
}
