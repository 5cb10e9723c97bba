import SwiftUI

@main
struct MVitDemoApp: App {
    var body: some Scene {
        WindowGroup {
            ContentView()
        }
    }
}
