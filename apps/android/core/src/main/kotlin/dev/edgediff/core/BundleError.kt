package dev.edgediff.core

/**
 * Every way a bundle can be refused, as one sealed type, so the app shows a clear message and a test can name
 * the check that failed (`code`) instead of matching message text. Nothing read from a bundle ever escapes as
 * a raw exception: parsing, path, checksum and runtime problems all become one of these.
 *
 * The Swift twin (BundleError.swift) has the same cases and the same codes.
 */
sealed class BundleError(val code: String, message: String) : Exception(message) {

    /** A component the pipeline needs (text_encoder, unet, vae_decoder) is not in the manifest. */
    class MissingComponent(val component: String, val have: List<String>) : BundleError(
        "missing_component",
        "the bundle has no $component component (it has: ${have.sorted().joinToString().ifEmpty { "none" }}); " +
            "re-run `edgediff convert` with --components text_encoder,unet,vae_decoder",
    )

    /** A file the manifest lists is not in the bundle folder. */
    class MissingFile(val path: String) : BundleError(
        "missing_file",
        "bundle file $path is missing; copy (or adb push) the whole bundle folder, not just manifest.json",
    )

    /** manifest.json says a format this reader does not know (or none). */
    class UnsupportedFormat(val found: String?) : BundleError(
        "unsupported_format",
        "manifest.json has format ${found?.let { "'$it'" } ?: "(none)"}; this app reads " +
            "${BundleManifest.FORMATS.joinToString(" or ") { "'$it'" }}: re-create the bundle with a matching edgediff",
    )

    /** A file's sha256 differs from the manifest's: corrupt, truncated or replaced. */
    class ChecksumMismatch(val file: String, val expected: String, val actual: String) : BundleError(
        "checksum_mismatch",
        "$file has sha256 ${actual.take(12)}… but the manifest says ${expected.take(12)}…; " +
            "the file is corrupt or was replaced: copy the bundle again",
    )

    /** A file's size differs from the manifest's (an interrupted copy, typically). */
    class SizeMismatch(val file: String, val expected: Long, val actual: Long) : BundleError(
        "size_mismatch",
        "$file has $actual bytes but the manifest says $expected; the copy is incomplete: copy it again",
    )

    /** A path in the manifest points outside the bundle folder (absolute, `..`, or through a symlink). */
    class PathOutsideBundle(val path: String) : BundleError(
        "path_outside_bundle",
        "manifest path '$path' points outside the bundle folder; the manifest is corrupt or hostile, refusing it",
    )

    /** The scheduler (or its tables) is one this runtime cannot run. */
    class UnsupportedScheduler(val name: String, val reason: String) : BundleError(
        "unsupported_scheduler",
        "scheduler '$name' cannot run here: $reason",
    )

    /** The bundle was made for a backend this app has no session for. */
    class UnsupportedBackend(val backend: String, val available: List<String>) : BundleError(
        "unsupported_backend",
        "the bundle is for backend '$backend'; this app runs ${available.joinToString()}: " +
            "convert with `edgediff convert --target ${available.firstOrNull() ?: "litert"}`",
    )

    /** A key is missing or has the wrong type; `key` is the JSON path, e.g. components.unet.inputs[0].name. */
    class InvalidManifest(val key: String, val expected: String) : BundleError(
        "invalid_manifest",
        "manifest.json: $key should be $expected; re-create the bundle with `edgediff convert`",
    )

    /** A JSON file of the bundle (or of the golden files) does not parse. */
    class InvalidJson(val file: String, val detail: String) : BundleError(
        "invalid_json",
        "$file is not valid JSON ($detail); the file is truncated or corrupt: copy it again",
    )

    /** The models need more memory than the device may give the app. */
    class OverMemoryBudget(val neededMb: Long, val budgetMb: Long) : BundleError(
        "over_memory_budget",
        "the bundle's models need about $neededMb MB but only $budgetMb MB are available; " +
            "use a smaller precision (--precision fp16 / int8) or a smaller model",
    )

    /** A tensor does not have the shape or type the manifest or the golden files promise. */
    class InvalidTensor(val name: String, val detail: String) : BundleError(
        "invalid_tensor",
        "tensor $name: $detail",
    )

    /** An image size the bundle does not make (or a malformed one); `detail` lists the sizes it has. */
    class UnsupportedSize(val size: String, val detail: String) : BundleError(
        "unsupported_size",
        "no $size image from this bundle: $detail",
    )

    /** The runtime could not load or run a component. */
    class SessionFailed(val component: String, val detail: String) : BundleError(
        "session_failed",
        "$component: the runtime failed: $detail",
    )
}
