// :core: the pipeline without Android (manifest, tokenizer, noise, schedulers, text-to-image, golden check,
// benchmark report). org.json is compileOnly: Android ships it; on a plain JVM the Android build of it is used.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    compileOnly("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation(platform("org.junit:junit-bom:5.11.4"))
    testImplementation("org.junit.jupiter:junit-jupiter")
    testRuntimeOnly("org.junit.platform:junit-platform-launcher")
    testImplementation("net.java.dev.jna:jna:5.13.0")
}

tasks.test {
    useJUnitPlatform()
    // The same inputs jvm-test.sh passes (see TestEnv.kt); tests needing a missing one skip, or fail with CI=true.
    val repo = rootDir.resolve("../..").canonicalPath
    systemProperty("edgediff.repo", repo)
    systemProperty("edgediff.golden", "$repo/apps/golden")
    systemProperty("edgediff.testdata", System.getenv("EDGEDIFF_TESTDATA") ?: "")
    systemProperty("edgediff.ort.lib", System.getenv("EDGEDIFF_ORT_LIB") ?: "")
    systemProperty("edgediff.litert.lib", System.getenv("EDGEDIFF_LITERT_LIB") ?: "")
    systemProperty("edgediff.ci", System.getenv("EDGEDIFF_CI") ?: System.getenv("CI") ?: "")
    testLogging { events("passed", "skipped", "failed"); showStandardStreams = true }
}
