import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "org.mvit.demo"
    compileSdk = 36

    defaultConfig {
        applicationId = "org.mvit.demo"
        minSdk = 24
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildFeatures {
        compose = true
    }

    // The model is memory-mapped from the APK: it must be stored uncompressed.
    androidResources {
        noCompress += "tflite"
    }

    // The golden record (shipped_models.json) goes into the APK: the benchmark checks each row's top-3 against it.
    sourceSets {
        getByName("main") {
            assets.srcDir(layout.buildDirectory.dir("generated/goldenAssets"))
        }
    }
}

// One copy of the record: the core's test resources, where python -m mvit.export.apps.fixtures writes it.
val copyGoldenRecord by tasks.registering(Copy::class) {
    from(rootProject.file("core/src/test/resources/golden/shipped_models.json"))
    into(layout.buildDirectory.dir("generated/goldenAssets"))
}
tasks.named("preBuild") { dependsOn(copyGoldenRecord) }

// Bytecode for Java 17, compiled by whatever JDK runs Gradle (17 or newer, e.g. Android Studio's
// bundled JDK 21): no jvmToolchain, which would demand an installed JDK 17 or a toolchain resolver.
kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(project(":core"))

    implementation(libs.litert)
    implementation(libs.litert.gpu)

    implementation(libs.camerax.core)
    implementation(libs.camerax.camera2)
    implementation(libs.camerax.lifecycle)
    implementation(libs.camerax.view)

    implementation(platform(libs.compose.bom))
    implementation(libs.compose.ui)
    implementation(libs.compose.ui.tooling.preview)
    implementation(libs.compose.material3)
    implementation(libs.activity.compose)
    implementation(libs.lifecycle.runtime.compose)
    implementation(libs.lifecycle.viewmodel)
    implementation(libs.core.ktx)
    implementation(libs.exifinterface)
    debugImplementation(libs.compose.ui.tooling)

    androidTestImplementation(libs.androidx.test.junit)
    androidTestImplementation(libs.androidx.test.runner)
}
