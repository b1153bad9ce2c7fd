package dev.edgediff.core

import org.json.JSONArray
import org.json.JSONObject
import java.io.File

/**
 * Small but complete bundles for the tests (the Swift twin: TestSupport.swift `BundleBuilder`): model files with
 * real checksums, the repo's tokenizer, the default model's scheduler tables; a test breaks one thing and expects
 * exactly that check to fail. `unetBatch` 2 is batched CFG; `timeCondDim` adds the UNet's `timestep_cond`.
 */
class TestBundle(val dir: File, unetBatch: Int = 2, timeCondDim: Int? = null) {
    private val raws = ArrayList<String>()
    val manifest: JSONObject

    init {
        dir.mkdirs()
        val components = JSONObject()
        for ((name, file) in MODEL_FILES) {
            val bytes = ByteArray(1000 + file.length) { (it * 31 + name.length).toByte() }
            File(dir, file).writeBytes(bytes)
            val (ins, outs) = when (name) {
                "text_encoder" -> listOf(tensor("input_ids", 1, 77, dtype = "int64")) to listOf(tensor("last_hidden_state", 1, 77, 32))
                "unet" -> listOfNotNull(
                    tensor("sample", unetBatch, 4, 8, 8), tensor("timestep", unetBatch), tensor("encoder_hidden_states", unetBatch, 77, 32),
                    timeCondDim?.let { tensor("timestep_cond", unetBatch, it) },
                ) to listOf(tensor("noise_pred", unetBatch, 4, 8, 8))
                else -> listOf(tensor("latent", 1, 4, 8, 8)) to listOf(tensor("image", 1, 3, 64, 64))
            }
            components.put(name, JSONObject().put("file", file).put("sha256", BundleManifest.sha256File(File(dir, file)))
                .put("bytes", bytes.size).put("inputs", JSONArray(ins)).put("outputs", JSONArray(outs)))
        }
        val tokDir = File(dir, "tokenizer").apply { mkdirs() }
        for (f in listOf("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")) {
            File(TestEnv.repo, "models/shapes-sd/tokenizer/$f").copyTo(File(tokDir, f), overwrite = true)
        }
        val tables = JSONObject(File(TestEnv.golden, "shapes-sd/scheduler_tables.json").readText())
        manifest = JSONObject()
            .put("format", "edgediff-bundle/1").put("backend", "onnxruntime").put("precision", "fp32")
            .put("components", components)
            .put("pipeline", JSONObject().put("latent_shape", JSONArray(listOf(1, 4, 8, 8))).put("height", 64).put("width", 64)
                .put("vae_scaling_factor", 0.48407)
                .put("guidance", JSONObject().put("scale", 5.0).put("batched_cfg", unetBatch == 2).put("embedded", timeCondDim != null))
                .put("scheduler", JSONObject().put("class_name", "DPMSolverMultistepScheduler").put("num_inference_steps", 25).put("tables", tables)))
            .put("tokenizer", JSONObject().put("vocab", "tokenizer/vocab.json").put("merges", "tokenizer/merges.txt").put("max_length", 77)
                .put("config", "tokenizer/tokenizer_config.json"))
        write()
    }

    fun write() = writeText(text())

    fun writeText(text: String) = File(dir, "manifest.json").writeText(text)

    fun load(): BundleManifest = BundleManifest.load(dir)

    /**
     * Sets `value` at `path` (keys and list indices; missing objects are created; null writes JSON null).
     * `{"$delete": true}` removes the key; `{"$raw": TEXT}` becomes TEXT in the file as it is (see `text`).
     */
    fun set(path: List<Any>, value: Any?) {
        var node: Any = manifest
        for (step in path.dropLast(1)) {
            node = when (node) {
                is JSONObject -> node.opt(step as String)?.takeIf { it is JSONObject || it is JSONArray } ?: JSONObject().also { node.put(step, it) }
                is JSONArray -> node.get(step as Int)
                else -> error("cannot step into $node at $step")
            }
        }
        val last = path.last()
        val delete = value is JSONObject && value.optBoolean("\$delete")
        val raw = (value as? JSONObject)?.optString("\$raw", null)
        val put: Any = when {
            raw != null -> "@@RAW${raws.size}@@".also { raws += raw }
            value == null -> JSONObject.NULL
            else -> value
        }
        when (node) {
            is JSONObject -> if (delete) node.remove(last as String) else node.put(last as String, put)
            is JSONArray -> node.put(last as Int, put)
        }
        write()
    }

    /** The manifest text with every `$raw` value in place. */
    fun text(): String = raws.foldIndexed(manifest.toString(1)) { i, text, raw -> text.replace("\"@@RAW$i@@\"", raw) }

    companion object {
        private val MODEL_FILES = mapOf("text_encoder" to "text_encoder.onnx", "unet" to "unet.onnx", "vae_decoder" to "vae_decoder.onnx")

        fun tensor(name: String, vararg shape: Any, dtype: String = "float32"): JSONObject =
            JSONObject().put("name", name).put("shape", JSONArray(shape.toList())).put("dtype", dtype)
    }
}

/**
 * Sessions that answer with constant tensors of each output's shape (no runtime needed): for checks of the loop's
 * rules, not of its numbers. `unetOutputCount` makes the UNet answer with the wrong number of values; `opened`
 * and `closed` record the components in order.
 */
class ShapeSessions(private val unetOutputCount: Int? = null) : SessionFactory {
    val opened = ArrayList<String>()
    val closed = ArrayList<String>()

    override fun open(component: ComponentSpec, chunk: ChunkSpec): InferenceSession {
        opened += component.name
        return object : InferenceSession {
            override val inputs = chunk.inputs
            override val outputs = chunk.outputs

            override fun run(feeds: Map<String, Tensor>): Map<String, FloatTensor> = outputs.associate { spec ->
                val shape = spec.shape.map { if (it > 0) it else 1 }.toIntArray()
                val n = if (component.name == "unet" && unetOutputCount != null) unetOutputCount else shape.fold(1) { a, d -> a * d }
                spec.name to FloatTensor(if (n == shape.fold(1) { a, d -> a * d }) shape else intArrayOf(n), FloatArray(n) { 0.1f })
            }

            override fun close() {
                closed += component.name
            }
        }
    }
}
