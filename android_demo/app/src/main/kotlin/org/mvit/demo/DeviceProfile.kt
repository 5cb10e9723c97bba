package org.mvit.demo

import android.os.Build
import org.mvit.core.DeviceInfo

/** The `device` block of the benchmark JSON, from `android.os.Build`. */
fun deviceInfo(): DeviceInfo = DeviceInfo(
    manufacturer = Build.MANUFACTURER,
    model = Build.MODEL,
    soc = socModel(),
    os = "Android",
    osVersion = Build.VERSION.RELEASE,
    abi = Build.SUPPORTED_ABIS.firstOrNull(),
)

/** `Build.SOC_MODEL` (Android 12+), null where unknown. */
fun socModel(): String? =
    if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) Build.SOC_MODEL.takeIf { it.isNotEmpty() && it != Build.UNKNOWN } else null
