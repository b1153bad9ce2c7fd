package dev.edgediff.app

import android.content.Context
import dev.edgediff.core.BundleError
import java.io.File

/**
 * Where bundles come from: the APK's assets (`assets/bundles/NAME/`, copied into the app's files folder on first
 * use, since runtimes need real files) or a folder pushed with adb into the app's external files folder
 * (`/sdcard/Android/data/dev.edgediff.app/files/bundles/NAME/`), which needs no storage permission.
 */
class Bundles(private val context: Context) {
    val pushedRoot: File get() = File(context.getExternalFilesDir(null), "bundles")
    private val copiedRoot: File get() = File(context.filesDir, "bundles")

    /** Names of every bundle found, pushed ones first. */
    fun list(): List<String> {
        val pushed = pushedRoot.listFiles()?.filter { File(it, "manifest.json").isFile }?.map { it.name } ?: emptyList()
        val assets = context.assets.list("bundles")?.toList() ?: emptyList()
        return (pushed + assets).distinct().sorted()
    }

    /** A bundle folder by name (pushed, else from assets) or by absolute path (a folder under the app's own dirs). */
    fun resolve(nameOrPath: String): File {
        if (nameOrPath.startsWith("/")) {
            val dir = File(nameOrPath).canonicalFile
            val allowed = listOfNotNull(context.getExternalFilesDir(null), context.filesDir).map { it.canonicalPath }
            if (allowed.none { dir.path.startsWith(it + File.separator) }) {
                throw BundleError.PathOutsideBundle("$nameOrPath (the app reads bundles only under ${allowed.joinToString(" or ")})")
            }
            return dir
        }
        if (nameOrPath.contains('/') || nameOrPath == ".." || nameOrPath.isBlank()) throw BundleError.PathOutsideBundle(nameOrPath)
        val pushed = File(pushedRoot, nameOrPath)
        if (File(pushed, "manifest.json").isFile) return pushed
        return copyFromAssets(nameOrPath)
    }

    private fun copyFromAssets(name: String): File {
        val target = File(copiedRoot, name)
        if (File(target, ".complete").isFile) return target
        val files = context.assets.list("bundles/$name")
        if (files.isNullOrEmpty()) throw BundleError.MissingFile("bundles/$name (neither pushed to ${pushedRoot.path} nor in the app's assets)")
        val staging = File(copiedRoot, ".$name.partial").apply { deleteRecursively(); mkdirs() }
        copyTree("bundles/$name", staging)
        target.deleteRecursively()
        if (!staging.renameTo(target)) throw BundleError.SessionFailed("assets", "could not move the copied bundle into ${target.path}")
        File(target, ".complete").writeText("copied from assets\n")
        return target
    }

    private fun copyTree(assetPath: String, dest: File) {
        val children = context.assets.list(assetPath) ?: emptyArray()
        if (children.isEmpty()) {
            context.assets.open(assetPath).use { input -> dest.outputStream().use { input.copyTo(it) } }
            return
        }
        dest.mkdirs()
        for (child in children) copyTree("$assetPath/$child", File(dest, child))
    }
}
