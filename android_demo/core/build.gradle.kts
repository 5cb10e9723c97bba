// Pure Kotlin/JVM: no android.* imports, so the same sources compile in CI with plain kotlinc
// (android_demo/ci/test_core.sh) and here with Gradle (`./gradlew :core:test`).
plugins {
    alias(libs.plugins.kotlin.jvm)
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    testImplementation(libs.junit)
}
