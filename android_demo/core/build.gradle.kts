// Pure Kotlin/JVM: no android.* imports, so the same sources compile in CI with plain kotlinc
// (android_demo/ci/test_core.sh) and here with Gradle (`./gradlew :core:test`); warnings are errors in both.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.kotlin.jvm)
}

// Java 17 bytecode from whatever JDK runs Gradle (17 or newer): no jvmToolchain (see app/build.gradle.kts).
java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
        allWarningsAsErrors.set(true)
    }
}

dependencies {
    testImplementation(libs.junit)
}

tasks.test {
    // ShippedModelTest checks the installed models against their recorded golden cases.
    systemProperty("mvit.appAssets", rootProject.file("app/src/main/assets").absolutePath)
}
