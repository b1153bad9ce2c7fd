// The edgediff Android sample: :core is pure Kotlin/JVM (no Android imports: it is also built and tested on a
// plain JVM by core/jvm-test.sh), :app is the Compose app with the LiteRT and ONNX Runtime sessions.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "edgediff-android"
include(":core", ":app")
