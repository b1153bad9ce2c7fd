import CoreGraphics
import EdgediffKit
import Foundation
import ImageIO
import UniformTypeIdentifiers

/// The pipeline's 8-bit RGB pixels as a CGImage (for SwiftUI) and as PNG bytes (for sharing).
enum ImageConversion {
    /// RGBX with the last byte ignored: 32 bits per pixel is the layout every CoreGraphics path accepts.
    static func cgImage(_ image: RgbImage) -> CGImage? {
        guard image.width > 0, image.height > 0, image.pixels.count == image.width * image.height * 3 else { return nil }
        var rgbx = [UInt8](repeating: 255, count: image.width * image.height * 4)
        for pixel in 0..<(image.width * image.height) {
            rgbx[pixel * 4] = image.pixels[pixel * 3]
            rgbx[pixel * 4 + 1] = image.pixels[pixel * 3 + 1]
            rgbx[pixel * 4 + 2] = image.pixels[pixel * 3 + 2]
        }
        guard let provider = CGDataProvider(data: Data(rgbx) as CFData) else { return nil }
        return CGImage(
            width: image.width, height: image.height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: image.width * 4,
            space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue),
            provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent)
    }

    static func pngData(_ image: CGImage) -> Data? {
        let data = NSMutableData()
        guard let destination = CGImageDestinationCreateWithData(data as CFMutableData, UTType.png.identifier as CFString, 1, nil) else {
            return nil
        }
        CGImageDestinationAddImage(destination, image, nil)
        return CGImageDestinationFinalize(destination) ? data as Data : nil
    }
}
