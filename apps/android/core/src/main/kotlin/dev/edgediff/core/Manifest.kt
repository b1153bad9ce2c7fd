package dev.edgediff.core

import java.io.File
import java.security.MessageDigest

/** One named input or output; dynamic dimensions (symbolic names in the manifest) are -1 here. */
data class TensorSpec(val name: String, val shape: List<Int>, val dtype: String) {
    /** The size of `axis` if the model fixes it, else null (as the Python runtime's `fixed_dim`). */
    fun fixedDim(axis: Int): Int? = shape.getOrNull(axis)?.takeIf { it > 0 }

    internal companion object {
        val DTYPES = setOf("float32", "float", "float16", "half", "float64", "double", "int64", "int32", "int8", "uint8", "bool")

        fun parse(node: JsonNode): TensorSpec {
            val shapeList = node.optArray("shape")
            // A size is an integer >= 0, a dynamic axis a name (edgediff/contract.py TensorSpec.from_dict refuses -1).
            val shape = (0 until (shapeList?.size ?: 0)).map { i ->
                when (val v = shapeList!!.raw(i)) {
                    is String -> -1
                    else -> JsonNode.asInt(v)?.takeIf { it >= 0 }
                        ?: throw BundleError.InvalidManifest("${shapeList.path}[$i]", "a dimension (integer >= 0 or a name)")
                }
            }
            val dtype = node.optString("dtype") ?: "float32"
            if (dtype.lowercase() !in DTYPES) {
                throw BundleError.InvalidManifest("${node.path}.dtype", "one of ${DTYPES.sorted().joinToString()}")
            }
            return TensorSpec(node.string("name"), shape, dtype.lowercase())
        }
    }
}

/** A side file of a model (ONNX external weights), checked like the model file. */
data class FileEntry(val relativePath: String, val file: File, val sha256: String?, val bytes: Long?)

/** One model file of a component; a component split into chunks chains them by tensor name. */
data class ChunkSpec(
    val relativePath: String,
    val file: File,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val sha256: String?,
    val bytes: Long?,
    val extraFiles: List<FileEntry>,
)

data class ComponentSpec(
    val name: String,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val chunks: List<ChunkSpec>,
) {
    fun input(name: String): TensorSpec? = inputs.firstOrNull { it.name == name }

    /** Bytes of every file of the component as the manifest records them (what loading it costs at least). */
    val bytes: Long get() = chunks.sumOf { c -> c.bytes ?: 0L }
}

data class GuidanceSpec(val scale: Double, val batchedCfg: Boolean, val embedded: Boolean)

/** `pipeline.scheduler`; `tablesError`: why the converter could not tabulate it (`tables_error`), when it could not. */
data class SchedulerSpec(val className: String, val numInferenceSteps: Int, val tables: SchedulerTables?, val tablesError: String? = null)

data class PipelineSpec(
    val latentShape: IntArray,
    val height: Int?,
    val width: Int?,
    val vaeScalingFactor: Double,
    val vaeShiftFactor: Double,
    val guidance: GuidanceSpec,
    val scheduler: SchedulerSpec,
    /** Every size the bundle makes, the first = height x width (`pipeline.sizes`; ImageSizes.kt). */
    val sizes: List<ImageSize> = emptyList(),
)

/** Where the CLIP tokenizer files are, plus special-token overrides the manifest may carry. */
data class TokenizerSpec(
    val vocab: File,
    val merges: File,
    val maxLength: Int,
    val config: File?,
    val overrides: Map<String, String>,
)

/**
 * `memory` (edgediff/bundle.py `memory_entry`): what the bundle needs, host-measured, and for a device target
 * with a budget the loading plan. `componentPeakMB`: each component's own peak (`components`); `peakMB`: all of
 * them resident (`peak_mb`); `budgetMB`: the target's `memory_budget_mb` (`budget_mb`); `target`: its name;
 * `plan`: "all resident", "sequential" or "does not fit" (MemoryPlan follows it); `note`: why, for the user.
 * The names are the Swift twin's (Manifest.swift `MemorySpec`).
 */
data class MemorySpec(
    val peakMB: Double?,
    val componentPeakMB: Map<String, Double>,
    val budgetMB: Double?,
    val target: String?,
    val plan: String? = null,
    val note: String? = null,
) {
    companion object {
        const val ALL_RESIDENT = "all resident"
        const val SEQUENTIAL = "sequential"
        const val DOES_NOT_FIT = "does not fit"
        val PLANS = listOf(ALL_RESIDENT, SEQUENTIAL, DOES_NOT_FIT)
    }
}

/**
 * A bundle's manifest.json, parsed and checked: the keys and types of the bundle schema, every path inside the
 * bundle folder, every model file present with its recorded size and sha256 (a `.mlpackage` folder hashed the
 * way edgediff/bundle.py does). Everything goes wrong as a `BundleError`; `load` never returns a half-checked
 * bundle.
 */
class BundleManifest private constructor(
    val root: File,
    val format: String,
    val backend: String,
    val precision: String,
    val edgediffVersion: String?,
    val components: Map<String, ComponentSpec>,
    val pipeline: PipelineSpec,
    val tokenizer: TokenizerSpec,
    val memory: MemorySpec?,
    val manifestSha256: String,
) {
    fun component(name: String): ComponentSpec =
        components[name] ?: throw BundleError.MissingComponent(name, components.keys.toList())

    val latentShape: IntArray get() = pipeline.latentShape

    /** Refuses a bundle that cannot fit `budgetMB` even loading one component at a time (see `MemoryPlan`). */
    fun checkMemoryBudget(budgetMB: Double) {
        MemoryPlan.plan(this, budgetMB)
    }

    /** The same check for a whole number of MB (what Android's ActivityManager gives). */
    fun checkMemoryBudget(budgetMb: Long) = checkMemoryBudget(budgetMb.toDouble())

    companion object {
        const val FORMAT_V1 = "edgediff-bundle/1"
        const val FORMAT_V2 = "edgediff-bundle/2"
        val FORMATS = listOf(FORMAT_V1, FORMAT_V2)
        val BACKENDS = listOf("onnxruntime", "litert", "coreml")
        val PRECISIONS = listOf("fp32", "fp16", "int8")
        val REQUIRED_COMPONENTS = listOf("text_encoder", "unet", "vae_decoder")
        private val HEX64 = Regex("[0-9a-f]{64}")

        /**
         * Read `dir/manifest.json` (or the manifest file itself) and check the whole bundle; with `verifyChecksums`
         * every model file is hashed (pass false only to re-open a bundle checked before).
         */
        fun load(dir: File, verifyChecksums: Boolean = true): BundleManifest {
            val manifestFile = (if (dir.name == "manifest.json" && dir.isFile) dir else File(dir, "manifest.json")).absoluteFile
            val root = manifestFile.parentFile.canonicalFile
            if (!manifestFile.isFile) throw BundleError.MissingFile(manifestFile.path)
            val bytes = manifestFile.readBytes()
            val parsed = JsonNode.parse(String(bytes, Charsets.UTF_8), "manifest.json")
            val json = parsed.root
            val rawFormat = json.raw("format")
            val format = rawFormat as? String
            if (format !in FORMATS) {
                throw BundleError.UnsupportedFormat(format ?: rawFormat?.takeIf { it != org.json.JSONObject.NULL }?.toString())
            }
            if (format == FORMAT_V2 && parsed.hadNonFinite) {
                throw BundleError.InvalidManifest("(document)", "strict JSON (edgediff-bundle/2 has no NaN or Infinity)")
            }
            val edgediffVersion = if (format == FORMAT_V2) json.string("edgediff_version") else json.optString("edgediff_version")
            val backend = json.string("backend")
            if (backend !in BACKENDS) throw BundleError.InvalidManifest("backend", "one of ${BACKENDS.joinToString()}")
            val precision = json.optString("precision") ?: "fp32"
            if (precision !in PRECISIONS) throw BundleError.InvalidManifest("precision", "one of ${PRECISIONS.joinToString()}")
            val checker = FileChecker(root, verifyChecksums)
            val componentsNode = json.node("components")
            val components = componentsNode.keys().associateWith { name ->
                parseComponent(name, componentsNode.node(name), checker)
            }
            for (name in REQUIRED_COMPONENTS) {
                if (name !in components) throw BundleError.MissingComponent(name, components.keys.toList())
            }
            val pipeline = parsePipeline(json.node("pipeline"))
            val tokenizer = parseTokenizer(json.node("tokenizer"), checker)
            val memory = json.optNode("memory")?.let(::parseMemory)
            return BundleManifest(
                root, format!!, backend, precision, edgediffVersion, components, pipeline, tokenizer, memory, sha256Hex(bytes),
            )
        }

        /** `memory`: MB figures are finite and >= 0 (a budget > 0), the plan one of `MemorySpec.PLANS`. */
        private fun parseMemory(node: JsonNode): MemorySpec {
            val perComponent = LinkedHashMap<String, Double>()
            node.optNode("components")?.let { c ->
                for (name in c.keys()) {
                    perComponent[name] = JsonNode.asDouble(c.raw(name))?.takeIf { it >= 0 }
                        ?: throw BundleError.InvalidManifest("memory.components.$name", "a non-negative number of MB")
                }
            }
            val peak = node.optDouble("peak_mb")
            if (peak != null && peak < 0) throw BundleError.InvalidManifest("memory.peak_mb", "a non-negative number of MB")
            val budget = node.optDouble("budget_mb")
            if (budget != null && budget <= 0) throw BundleError.InvalidManifest("memory.budget_mb", "a positive number of MB")
            val plan = node.optString("plan")
            if (plan != null && plan !in MemorySpec.PLANS) {
                throw BundleError.InvalidManifest("memory.plan", "one of ${MemorySpec.PLANS.joinToString { "'$it'" }}")
            }
            return MemorySpec(peak, perComponent, budget, node.optString("target"), plan, node.optString("note"))
        }

        /** sha256 of an entry: lower-case hex; required when checksums are verified (as edgediff/contract.py). */
        private fun sha(node: JsonNode, checker: FileChecker): String? {
            val sha = node.optString("sha256")
            if (sha == null && !checker.verify) return null
            if (sha == null || !HEX64.matches(sha)) {
                throw BundleError.InvalidManifest("${node.path}.sha256", "a lower-case hex sha256 (64 characters)")
            }
            return sha
        }

        private fun parseEntry(node: JsonNode, checker: FileChecker): Triple<File, List<FileEntry>, Pair<String?, Long?>> {
            val extras = (node.optArray("extra_files")?.nodes() ?: emptyList()).map { e ->
                val rel = e.string("file")
                val size = e.optCount("bytes")?.toLong()
                val sha = sha(e, checker)
                FileEntry(rel, checker.check(rel, sha, size), sha, size)
            }
            val rel = node.string("file")
            val size = node.optCount("bytes")?.toLong()
            val sha = sha(node, checker)
            // With side files, `bytes` counts them too (edgediff/bundle.py), so only the checksum applies.
            val file = checker.check(rel, sha, if (extras.isEmpty()) size else null)
            return Triple(file, extras, sha to size)
        }

        private fun parseComponent(name: String, node: JsonNode, checker: FileChecker): ComponentSpec {
            val inputs = node.optArray("inputs")?.nodes()?.map(TensorSpec::parse) ?: emptyList()
            val outputs = node.optArray("outputs")?.nodes()?.map(TensorSpec::parse) ?: emptyList()
            val chunkNodes = node.optArray("chunks")?.nodes() ?: emptyList()
            val chunks = if (chunkNodes.isNotEmpty()) {
                chunkNodes.map { c ->
                    val (file, extras, meta) = parseEntry(c, checker)
                    ChunkSpec(
                        c.string("file"), file, c.array("inputs").nodes().map(TensorSpec::parse),
                        c.array("outputs").nodes().map(TensorSpec::parse), meta.first, meta.second, extras,
                    )
                }
            } else {
                if (!node.has("file")) throw BundleError.InvalidManifest("${node.path}.file", "a file name (or a chunks list)")
                val (file, extras, meta) = parseEntry(node, checker)
                listOf(ChunkSpec(node.string("file"), file, inputs, outputs, meta.first, meta.second, extras))
            }
            val ins = inputs.ifEmpty { chunks.first().inputs }
            val outs = outputs.ifEmpty { chunks.last().outputs }
            if (ins.isEmpty()) throw BundleError.InvalidManifest("${node.path}.inputs", "a non-empty list of tensors")
            if (outs.isEmpty()) throw BundleError.InvalidManifest("${node.path}.outputs", "a non-empty list of tensors")
            return ComponentSpec(name, ins, outs, chunks)
        }

        private fun parsePipeline(node: JsonNode): PipelineSpec {
            val shapeList = node.array("latent_shape")
            val latent = IntArray(shapeList.size) { JsonNode.asInt(shapeList.raw(it)) ?: 0 }
            if (latent.size != 4 || latent.any { it <= 0 } || latent[0] != 1) {
                throw BundleError.InvalidManifest("pipeline.latent_shape", "[1, channels, height, width] with positive sizes")
            }
            Tensor.elementCount(latent, "latent")
            val guidanceNode = node.optNode("guidance")
            val guidance = GuidanceSpec(
                scale = guidanceNode?.optDouble("scale") ?: 7.5,
                batchedCfg = guidanceNode?.optBool("batched_cfg") ?: true,
                embedded = guidanceNode?.optBool("embedded") ?: false,
            )
            val sched = node.node("scheduler")
            val className = sched.string("class_name")
            if (className !in SchedulerTables.KNOWN_CLASSES) {
                throw BundleError.UnsupportedScheduler(className, "not one of ${SchedulerTables.KNOWN_CLASSES.joinToString()}")
            }
            val tables = sched.optNode("tables")?.let { SchedulerTables.parse(it) }
            val steps = sched.optCount("num_inference_steps") ?: tables?.numInferenceSteps ?: 25
            if (steps < 1) throw BundleError.InvalidManifest("pipeline.scheduler.num_inference_steps", "a positive integer")
            val scaling = node.optDouble("vae_scaling_factor") ?: 0.18215
            if (scaling <= 0) throw BundleError.InvalidManifest("pipeline.vae_scaling_factor", "a positive number")
            val height = node.optCount("height")
            val width = node.optCount("width")
            return PipelineSpec(
                latentShape = latent,
                height = height,
                width = width,
                vaeScalingFactor = scaling,
                vaeShiftFactor = node.optDouble("vae_shift_factor") ?: 0.0,
                guidance = guidance,
                scheduler = SchedulerSpec(className, steps, tables, sched.optString("tables_error")),
                sizes = ImageSizes.parse(node, latent, height, width),
            )
        }

        private fun parseTokenizer(node: JsonNode, checker: FileChecker): TokenizerSpec {
            val maxLength = node.optCount("max_length") ?: 77
            if (maxLength < 2 || maxLength > 4096) throw BundleError.InvalidManifest("tokenizer.max_length", "an integer in 2..4096")
            val overrides = listOf("bos_token", "eos_token", "unk_token", "pad_token").mapNotNull { k ->
                node.optString(k)?.let { k to it }
            }.toMap()
            return TokenizerSpec(
                vocab = checker.check(node.string("vocab"), null, null),
                merges = checker.check(node.string("merges"), null, null),
                maxLength = maxLength,
                config = node.optString("config")?.let { rel -> checker.inside(rel).takeIf { it.isFile } },
                overrides = overrides,
            )
        }

        fun sha256Hex(bytes: ByteArray): String = MessageDigest.getInstance("SHA-256").digest(bytes).toHex()

        fun sha256File(file: File): String {
            val digest = MessageDigest.getInstance("SHA-256")
            file.inputStream().use { input ->
                val buffer = ByteArray(1 shl 20)
                while (true) {
                    val n = input.read(buffer)
                    if (n < 0) break
                    digest.update(buffer, 0, n)
                }
            }
            return digest.digest().toHex()
        }

        /**
         * sha256 of a file; of a folder (a Core ML .mlpackage): each file's relative path then its hex sha256, in
         * the order Python sorts the paths (component by component), as edgediff/bundle.py writes it.
         */
        fun sha256Path(path: File): String {
            if (path.isFile) return sha256File(path)
            val files = path.walkTopDown().filter { it.isFile }.map { it.relativeTo(path).invariantSeparatorsPath }.toList()
            val sorted = files.sortedWith { a, b -> comparePathParts(a.split('/'), b.split('/')) }
            val digest = MessageDigest.getInstance("SHA-256")
            for (rel in sorted) {
                digest.update(rel.toByteArray(Charsets.UTF_8))
                digest.update(sha256File(File(path, rel)).toByteArray(Charsets.US_ASCII))
            }
            return digest.digest().toHex()
        }

        private fun comparePathParts(a: List<String>, b: List<String>): Int {
            for (i in 0 until minOf(a.size, b.size)) {
                val c = a[i].compareTo(b[i])
                if (c != 0) return c
            }
            return a.size.compareTo(b.size)
        }

        private fun ByteArray.toHex(): String = joinToString("") { "%02x".format(it) }
    }

    /** Resolves manifest paths strictly inside the bundle and checks presence, size and checksum. */
    private class FileChecker(val root: File, val verify: Boolean) {
        fun inside(rel: String): File {
            // as the Swift twin: absolute, home-relative, a drive (C:), a `..` part, a NUL, or nothing but separators
            if (rel.startsWith("/") || rel.startsWith("\\") || rel.startsWith("~") || rel.contains('\u0000') ||
                (rel.length >= 2 && rel[1] == ':') || rel.split('/', '\\').any { it == ".." } ||
                rel.split('/', '\\').all { it.isEmpty() }
            ) {
                throw BundleError.PathOutsideBundle(rel)
            }
            val file = File(root, rel).canonicalFile // resolves symlinks too
            if (!file.path.startsWith(root.path + File.separator)) throw BundleError.PathOutsideBundle(rel)
            return file
        }

        fun check(rel: String, sha: String?, size: Long?): File {
            val file = inside(rel)
            if (!file.exists()) throw BundleError.MissingFile(rel)
            if (size != null && file.isFile && file.length() != size) throw BundleError.SizeMismatch(rel, size, file.length())
            if (verify && sha != null) {
                val actual = sha256Path(file)
                if (actual != sha) throw BundleError.ChecksumMismatch(rel, sha, actual)
            }
            return file
        }
    }
}
