import Foundation

/// The Python runtime's seed convention, bit for bit: numpy's `default_rng(seed)` (SeedSequence -> PCG64) and
/// `standard_normal(shape, dtype=float32)` (numpy's float32 ziggurat).
///
/// The initial latent of image `seed` is `Noise(seed:).standardNormal(count:)` times `init_noise_sigma`, and
/// schedulers that inject noise (LCM) draw from the same generator, in step order (edgediff/runtime/pipeline.py).
/// Swift has no portable 128-bit integer before iOS 18, so PCG64's state is two UInt64 halves.
public struct Noise: Sendable {
    private var bits: PCG64

    /// `numpy.random.default_rng(seed)`.
    public init(seed: UInt64) {
        bits = PCG64(seedState: SeedSequence.state(entropy: SeedSequence.words(of: seed)))
    }

    /// Raw PCG64 output (numpy's `bit_generator.random_raw()`); exposed for the bit-exactness tests.
    public mutating func nextUInt64() -> UInt64 { bits.nextUInt64() }

    /// numpy's next_uint32: the low half of a 64-bit draw, then its high half on the next call.
    public mutating func nextUInt32() -> UInt32 { bits.nextUInt32() }

    /// The next `count` draws of `standard_normal(dtype=float32)`, in C order.
    public mutating func standardNormal(count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: max(count, 0))
        for i in out.indices { out[i] = nextStandardNormal() }
        return out
    }

    /// `standard_normal(shape, dtype=float32)`.
    public mutating func standardNormal(shape: [Int]) throws -> FloatTensor {
        let count = try Tensor.elementCount(shape, name: "noise")
        return try FloatTensor(shape: shape, data: standardNormal(count: count), name: "noise")
    }

    /// The unscaled initial latent of image `seed` (edgediff/runtime/pipeline.py `initial_noise`).
    public static func initialNoise(seed: UInt64, shape: [Int]) throws -> FloatTensor {
        var noise = Noise(seed: seed)
        return try noise.standardNormal(shape: shape)
    }

    /// numpy's `random_standard_normal_f` (distributions.c), operation for operation in float32.
    public mutating func nextStandardNormal() -> Float {
        while true {
            let r = bits.nextUInt32()
            let idx = Int(r & 0xFF)
            let negative = (r >> 8) & 0x1 == 1
            let rabs = (r >> 9) & 0x007F_FFFF
            var x = Float(rabs) * Noise.wi[idx]
            if negative { x = -x }
            if rabs < Noise.ki[idx] { return x }  // 99.3% of draws end here
            if idx == 0 {
                // The tail beyond r, sampled by Marsaglia's method (numpy uses 1 - U so log never sees 0).
                while true {
                    let xx = -Noise.norInvR * Noise.log1pf(-nextFloat())
                    let yy = -Noise.log1pf(-nextFloat())
                    if yy + yy > xx * xx {
                        return (rabs >> 8) & 0x1 == 1 ? -(Noise.norR + xx) : Noise.norR + xx
                    }
                }
            } else {
                let height = (Noise.fi[idx - 1] - Noise.fi[idx]) * nextFloat() + Noise.fi[idx]
                if Double(height) < exp(-0.5 * Double(x) * Double(x)) { return x }
            }
        }
    }

    /// numpy's `next_float`: the top 24 bits of a 32-bit draw, times 2^-24.
    private mutating func nextFloat() -> Float {
        Float(bits.nextUInt32() >> 8) * 0x1p-24
    }

    /// glibc's float `log1pf` (the fdlibm algorithm, as numpy on Linux calls it), operation for operation.
    ///
    /// Why not the platform's: the tail draws above go through log1pf, and Apple's libm rounds differently from
    /// glibc's for about 7% of the inputs numpy passes, which would break bit-exactness with numpy on Linux (where
    /// the golden files are made). Checked exhaustively against glibc 2.36 over every input numpy can pass.
    static func log1pf(_ x: Float) -> Float {
        let ln2Hi = Float(bitPattern: 0x3F31_7180)
        let ln2Lo = Float(bitPattern: 0x3717_F7D1)
        let hx = Int32(bitPattern: x.bitPattern)
        let ax = hx & 0x7FFF_FFFF
        var k: Int32 = 1
        var f: Float = 0
        var c: Float = 0
        var hu: Int32 = 0
        if hx < 0x3ED4_13D7 {  // 1 + x < sqrt(2)+
            if ax >= 0x3F80_0000 {  // x <= -1
                return x == -1 ? -.infinity : .nan
            }
            if ax < 0x3100_0000 {  // |x| < 2^-29
                return ax < 0x2480_0000 ? x : x - x * x * 0.5
            }
            if hx > 0 || hx <= Int32(bitPattern: 0xBE95_F61F) {  // sqrt(2)/2- <= 1 + x < sqrt(2)+
                k = 0
                f = x
                hu = 1
            }
        }
        if hx >= 0x7F80_0000 { return x + x }  // +inf or NaN
        if k != 0 {
            var u: Float
            if hx < 0x5A00_0000 {
                u = 1 + x
                hu = Int32(bitPattern: u.bitPattern)
                k = (hu >> 23) - 127
                c = k > 0 ? 1 - (u - x) : x - (u - 1)  // the rounding error of 1 + x
                c /= u
            } else {
                u = x
                hu = Int32(bitPattern: u.bitPattern)
                k = (hu >> 23) - 127
                c = 0
            }
            hu &= 0x007F_FFFF
            if hu < 0x3504F7 {
                u = Float(bitPattern: UInt32(bitPattern: hu | 0x3F80_0000))  // normalize u
            } else {
                k += 1
                u = Float(bitPattern: UInt32(bitPattern: hu | 0x3F00_0000))  // normalize u / 2
                hu = (0x0080_0000 - hu) >> 2
            }
            f = u - 1
        }
        let hfsq = 0.5 * f * f
        let fk = Float(k)
        if hu == 0 {  // |f| < 2^-20
            if f == 0 {
                if k == 0 { return 0 }
                c += fk * ln2Lo
                return fk * ln2Hi + c
            }
            let r = hfsq * (1 - Float(bitPattern: 0x3F2A_AAAB) * f)
            if k == 0 { return f - r }
            return fk * ln2Hi - ((r - (fk * ln2Lo + c)) - f)
        }
        let s = f / (2 + f)
        let z = s * s
        var r = Float(bitPattern: 0x3E17_8897)  // Lp7 ... Lp1
        for coefficient: UInt32 in [0x3E1C_D04F, 0x3E3A_3325, 0x3E63_8E29, 0x3E92_4925, 0x3ECC_CCCD, 0x3F2A_AAAB] {
            r = Float(bitPattern: coefficient) + z * r
        }
        r = z * r
        if k == 0 { return f - (hfsq - s * (hfsq + r)) }
        return fk * ln2Hi - ((hfsq - (s * (hfsq + r) + (fk * ln2Lo + c))) - f)
    }

    static let wi: [Float] = wiBits.map { Float(bitPattern: $0) }
    static let fi: [Float] = fiBits.map { Float(bitPattern: $0) }
    /// numpy's `ki_float`: the 23-bit acceptance thresholds per layer.
    static let ki: [UInt32] = [
        0x007799EC, 0x00000000, 0x006045F5, 0x006D1AA8, 0x00728FB4, 0x007592AF, 0x00777A5C, 0x0078CA38,
        0x0079BF6B, 0x007A7A35, 0x007B0D2F, 0x007B83D4, 0x007BE597, 0x007C3788, 0x007C7D33, 0x007CB926,
        0x007CED48, 0x007D1B08, 0x007D437F, 0x007D678B, 0x007D87DB, 0x007DA4FC, 0x007DBF61, 0x007DD767,
        0x007DED5D, 0x007E0183, 0x007E1411, 0x007E2534, 0x007E3515, 0x007E43D5, 0x007E5193, 0x007E5E67,
        0x007E6A69, 0x007E75AA, 0x007E803E, 0x007E8A32, 0x007E9395, 0x007E9C72, 0x007EA4D5, 0x007EACC6,
        0x007EB44E, 0x007EBB75, 0x007EC243, 0x007EC8BC, 0x007ECEE8, 0x007ED4CC, 0x007EDA6B, 0x007EDFCB,
        0x007EE4EF, 0x007EE9DC, 0x007EEE94, 0x007EF31B, 0x007EF774, 0x007EFBA0, 0x007EFFA3, 0x007F037F,
        0x007F0736, 0x007F0ACA, 0x007F0E3C, 0x007F118F, 0x007F14C4, 0x007F17DC, 0x007F1ADA, 0x007F1DBD,
        0x007F2087, 0x007F233A, 0x007F25D7, 0x007F285D, 0x007F2AD0, 0x007F2D2E, 0x007F2F7A, 0x007F31B3,
        0x007F33DC, 0x007F35F3, 0x007F37FB, 0x007F39F3, 0x007F3BDC, 0x007F3DB7, 0x007F3F84, 0x007F4145,
        0x007F42F8, 0x007F449F, 0x007F463A, 0x007F47CA, 0x007F494E, 0x007F4AC8, 0x007F4C38, 0x007F4D9D,
        0x007F4EF9, 0x007F504C, 0x007F5195, 0x007F52D5, 0x007F540D, 0x007F553D, 0x007F5664, 0x007F5784,
        0x007F589C, 0x007F59AC, 0x007F5AB5, 0x007F5BB8, 0x007F5CB3, 0x007F5DA8, 0x007F5E96, 0x007F5F7E,
        0x007F605F, 0x007F613B, 0x007F6210, 0x007F62E0, 0x007F63AA, 0x007F646F, 0x007F652E, 0x007F65E8,
        0x007F669C, 0x007F674C, 0x007F67F6, 0x007F689C, 0x007F693C, 0x007F69D9, 0x007F6A70, 0x007F6B03,
        0x007F6B91, 0x007F6C1B, 0x007F6CA0, 0x007F6D21, 0x007F6D9E, 0x007F6E17, 0x007F6E8C, 0x007F6EFC,
        0x007F6F68, 0x007F6FD1, 0x007F7035, 0x007F7096, 0x007F70F3, 0x007F714C, 0x007F71A1, 0x007F71F2,
        0x007F723F, 0x007F7289, 0x007F72CF, 0x007F7312, 0x007F7350, 0x007F738B, 0x007F73C3, 0x007F73F6,
        0x007F7427, 0x007F7453, 0x007F747C, 0x007F74A1, 0x007F74C3, 0x007F74E0, 0x007F74FB, 0x007F7511,
        0x007F7524, 0x007F7533, 0x007F753F, 0x007F7546, 0x007F754A, 0x007F754B, 0x007F7547, 0x007F753F,
        0x007F7534, 0x007F7524, 0x007F7511, 0x007F74F9, 0x007F74DE, 0x007F74BE, 0x007F749A, 0x007F7472,
        0x007F7445, 0x007F7414, 0x007F73DF, 0x007F73A5, 0x007F7366, 0x007F7323, 0x007F72DA, 0x007F728D,
        0x007F723A, 0x007F71E3, 0x007F7186, 0x007F7123, 0x007F70BB, 0x007F704D, 0x007F6FD9, 0x007F6F5F,
        0x007F6EDF, 0x007F6E58, 0x007F6DCB, 0x007F6D37, 0x007F6C9C, 0x007F6BF9, 0x007F6B4F, 0x007F6A9C,
        0x007F69E2, 0x007F691F, 0x007F6854, 0x007F677F, 0x007F66A1, 0x007F65B8, 0x007F64C6, 0x007F63C8,
        0x007F62C0, 0x007F61AB, 0x007F608A, 0x007F5F5D, 0x007F5E21, 0x007F5CD8, 0x007F5B7F, 0x007F5A17,
        0x007F589E, 0x007F5713, 0x007F5575, 0x007F53C4, 0x007F51FE, 0x007F5022, 0x007F4E2F, 0x007F4C22,
        0x007F49FA, 0x007F47B6, 0x007F4553, 0x007F42CF, 0x007F4028, 0x007F3D5A, 0x007F3A64, 0x007F3741,
        0x007F33ED, 0x007F3065, 0x007F2CA4, 0x007F28A4, 0x007F245F, 0x007F1FCE, 0x007F1AEA, 0x007F15A9,
        0x007F1000, 0x007F09E4, 0x007F0346, 0x007EFC16, 0x007EF43E, 0x007EEBA8, 0x007EE237, 0x007ED7C8,
        0x007ECC2F, 0x007EBF37, 0x007EB09D, 0x007EA00A, 0x007E8D0D, 0x007E7710, 0x007E5D47, 0x007E3E93,
        0x007E1959, 0x007DEB2C, 0x007DB036, 0x007D6203, 0x007CF4B9, 0x007C4FD2, 0x007B3630, 0x0078D2D2,
    ]
    /// numpy's `wi_float` as float32 bit patterns (literals would round twice on some compilers).
    static let wiBits: [UInt32] = [
        0x34FA49DC, 0x32DC685F, 0x3312857A, 0x332BE5CA, 0x33400FE7, 0x33511861, 0x33600269, 0x336D617B,
        0x33799241, 0x33826991, 0x3387A82A, 0x338C9535, 0x33913D14, 0x3395A972, 0x3399E1FE, 0x339DECF6,
        0x33A1CF7C, 0x33A58DDA, 0x33A92BAB, 0x33ACAC05, 0x33B0118E, 0x33B35E93, 0x33B69515, 0x33B9B6D7,
        0x33BCC569, 0x33BFC22D, 0x33C2AE63, 0x33C58B25, 0x33C85975, 0x33CB1A3C, 0x33CDCE4C, 0x33D07667,
        0x33D3133B, 0x33D5A56B, 0x33D82D8B, 0x33DAAC24, 0x33DD21B4, 0x33DF8EB1, 0x33E1F388, 0x33E4509D,
        0x33E6A650, 0x33E8F4F8, 0x33EB3CE9, 0x33ED7E70, 0x33EFB9D5, 0x33F1EF5E, 0x33F41F4A, 0x33F649D6,
        0x33F86F3C, 0x33FA8FB3, 0x33FCAB6D, 0x33FEC29C, 0x34006AB7, 0x34017208, 0x34027755, 0x34037AB3,
        0x34047C35, 0x34057BEC, 0x340679EB, 0x34077642, 0x34087102, 0x34096A38, 0x340A61F5, 0x340B5846,
        0x340C4D39, 0x340D40DB, 0x340E3338, 0x340F245D, 0x34101455, 0x3411032C, 0x3411F0EC, 0x3412DDA0,
        0x3413C953, 0x3414B40E, 0x34159DDB, 0x341686C3, 0x34176ECF, 0x34185608, 0x34193C77, 0x341A2224,
        0x341B0716, 0x341BEB56, 0x341CCEEB, 0x341DB1DE, 0x341E9435, 0x341F75F7, 0x3420572C, 0x342137D9,
        0x34221807, 0x3422F7BC, 0x3423D6FD, 0x3424B5D2, 0x34259440, 0x3426724D, 0x34275001, 0x34282D5F,
        0x34290A70, 0x3429E737, 0x342AC3BA, 0x342BA000, 0x342C7C0E, 0x342D57E9, 0x342E3397, 0x342F0F1C,
        0x342FEA7E, 0x3430C5C3, 0x3431A0EF, 0x34327C08, 0x34335713, 0x34343214, 0x34350D11, 0x3435E80F,
        0x3436C313, 0x34379E22, 0x34387940, 0x34395473, 0x343A2FBF, 0x343B0B2A, 0x343BE6B8, 0x343CC26E,
        0x343D9E52, 0x343E7A68, 0x343F56B4, 0x3440333D, 0x34411007, 0x3441ED16, 0x3442CA71, 0x3443A81B,
        0x3444861B, 0x34456475, 0x3446432D, 0x3447224B, 0x344801D1, 0x3448E1C7, 0x3449C231, 0x344AA314,
        0x344B8476, 0x344C665C, 0x344D48CD, 0x344E2BCC, 0x344F0F61, 0x344FF391, 0x3450D862, 0x3451BDD9,
        0x3452A3FD, 0x34538AD4, 0x34547263, 0x34555AB2, 0x345643C6, 0x34572DA7, 0x3458185A, 0x345903E8,
        0x3459F055, 0x345ADDAA, 0x345BCBEE, 0x345CBB28, 0x345DAB5F, 0x345E9C9B, 0x345F8EE5, 0x34608243,
        0x346176BF, 0x34626C61, 0x34636330, 0x34645B37, 0x3465547E, 0x34664F0E, 0x34674AF2, 0x34684832,
        0x346946D9, 0x346A46F1, 0x346B4885, 0x346C4BA0, 0x346D504D, 0x346E5698, 0x346F5E8D, 0x34706838,
        0x347173A6, 0x347280E5, 0x34739001, 0x3474A10A, 0x3475B40E, 0x3476C91C, 0x3477E043, 0x3478F994,
        0x347A1520, 0x347B32F9, 0x347C5330, 0x347D75D9, 0x347E9B07, 0x347FC2CE, 0x348076A2, 0x34810D40,
        0x3481A54C, 0x34823ED2, 0x3482D9E0, 0x34837681, 0x348414C4, 0x3484B4B8, 0x3485566C, 0x3485F9EF,
        0x34869F52, 0x348746A6, 0x3487EFFF, 0x34889B70, 0x3489490D, 0x3489F8EB, 0x348AAB22, 0x348B5FCA,
        0x348C16FC, 0x348CD0D3, 0x348D8D6C, 0x348E4CE5, 0x348F0F60, 0x348FD4FE, 0x34909DE5, 0x34916A3C,
        0x34923A2D, 0x34930DE6, 0x3493E598, 0x3494C176, 0x3495A1BB, 0x349686A2, 0x3497706E, 0x34985F67,
        0x349953DB, 0x349A4E20, 0x349B4E94, 0x349C559D, 0x349D63AC, 0x349E793E, 0x349F96DD, 0x34A0BD25,
        0x34A1ECC1, 0x34A32672, 0x34A46B14, 0x34A5BB9D, 0x34A71928, 0x34A884FB, 0x34AA008B, 0x34AB8D8D,
        0x34AD2E04, 0x34AEE451, 0x34B0B34E, 0x34B29E74, 0x34B4AA06, 0x34B6DB5C, 0x34B93948, 0x34BBCCAB,
        0x34BEA170, 0x34C1C818, 0x34C5587E, 0x34C97705, 0x34CE5F70, 0x34D47EE4, 0x34DCC0FA, 0x34E9DDA4,
    ]
    /// numpy's `fi_float` as float32 bit patterns.
    static let fiBits: [UInt32] = [
        0x3F800000, 0x3F7A2356, 0x3F75BAA3, 0x3F71F88F, 0x3F6E9B7D, 0x3F6B8490, 0x3F68A24C, 0x3F65E99D,
        0x3F6352F6, 0x3F60D8E7, 0x3F5E775A, 0x3F5C2B2A, 0x3F59F1D4, 0x3F57C952, 0x3F55AFF8, 0x3F53A45F,
        0x3F51A558, 0x3F4FB1DF, 0x3F4DC914, 0x3F4BEA33, 0x3F4A148E, 0x3F48478E, 0x3F4682AA, 0x3F44C56A,
        0x3F430F60, 0x3F416028, 0x3F3FB76A, 0x3F3E14D4, 0x3F3C781A, 0x3F3AE0F8, 0x3F394F30, 0x3F37C286,
        0x3F363AC5, 0x3F34B7BB, 0x3F333939, 0x3F31BF15, 0x3F304925, 0x3F2ED743, 0x3F2D694D, 0x3F2BFF21,
        0x3F2A98A0, 0x3F2935AB, 0x3F27D627, 0x3F2679FA, 0x3F25210C, 0x3F23CB43, 0x3F22788A, 0x3F2128CC,
        0x3F1FDBF5, 0x3F1E91F1, 0x3F1D4AAD, 0x3F1C0619, 0x3F1AC424, 0x3F1984BE, 0x3F1847D8, 0x3F170D63,
        0x3F15D551, 0x3F149F94, 0x3F136C21, 0x3F123AEB, 0x3F110BE5, 0x3F0FDF05, 0x3F0EB440, 0x3F0D8B8B,
        0x3F0C64DC, 0x3F0B4029, 0x3F0A1D69, 0x3F08FC92, 0x3F07DD9D, 0x3F06C081, 0x3F05A534, 0x3F048BB1,
        0x3F0373EE, 0x3F025DE5, 0x3F01498F, 0x3F0036E4, 0x3EFE4BBC, 0x3EFC2CED, 0x3EFA114E, 0x3EF7F8D4,
        0x3EF5E371, 0x3EF3D11B, 0x3EF1C1C7, 0x3EEFB56A, 0x3EEDABFA, 0x3EEBA56B, 0x3EE9A1B5, 0x3EE7A0CE,
        0x3EE5A2AC, 0x3EE3A746, 0x3EE1AE93, 0x3EDFB88C, 0x3EDDC527, 0x3EDBD45C, 0x3ED9E623, 0x3ED7FA75,
        0x3ED6114A, 0x3ED42A9A, 0x3ED2465F, 0x3ED06492, 0x3ECE852B, 0x3ECCA824, 0x3ECACD77, 0x3EC8F51D,
        0x3EC71F10, 0x3EC54B4A, 0x3EC379C5, 0x3EC1AA7C, 0x3EBFDD69, 0x3EBE1285, 0x3EBC49CD, 0x3EBA833B,
        0x3EB8BECA, 0x3EB6FC74, 0x3EB53C35, 0x3EB37E09, 0x3EB1C1EA, 0x3EB007D4, 0x3EAE4FC2, 0x3EAC99B1,
        0x3EAAE59C, 0x3EA9337E, 0x3EA78354, 0x3EA5D51B, 0x3EA428CD, 0x3EA27E67, 0x3EA0D5E7, 0x3E9F2F47,
        0x3E9D8A84, 0x3E9BE79B, 0x3E9A4689, 0x3E98A74A, 0x3E9709DC, 0x3E956E3A, 0x3E93D462, 0x3E923C51,
        0x3E90A604, 0x3E8F1178, 0x3E8D7EAA, 0x3E8BED97, 0x3E8A5E3E, 0x3E88D09A, 0x3E8744AB, 0x3E85BA6C,
        0x3E8431DC, 0x3E82AAF9, 0x3E8125C0, 0x3E7F445C, 0x3E7C4084, 0x3E793FF3, 0x3E7642A5, 0x3E734896,
        0x3E7051C1, 0x3E6D5E23, 0x3E6A6DB8, 0x3E67807C, 0x3E64966D, 0x3E61AF86, 0x3E5ECBC4, 0x3E5BEB24,
        0x3E590DA3, 0x3E56333D, 0x3E535BF0, 0x3E5087BA, 0x3E4DB696, 0x3E4AE883, 0x3E481D7E, 0x3E455585,
        0x3E429094, 0x3E3FCEAB, 0x3E3D0FC7, 0x3E3A53E5, 0x3E379B04, 0x3E34E522, 0x3E32323D, 0x3E2F8254,
        0x3E2CD564, 0x3E2A2B6D, 0x3E27846D, 0x3E24E063, 0x3E223F4E, 0x3E1FA12C, 0x3E1D05FD, 0x3E1A6DC0,
        0x3E17D874, 0x3E154619, 0x3E12B6AD, 0x3E102A31, 0x3E0DA0A5, 0x3E0B1A07, 0x3E089659, 0x3E06159A,
        0x3E0397CA, 0x3E011CEB, 0x3DFD49F6, 0x3DF85FF9, 0x3DF37BE0, 0x3DEE9DAB, 0x3DE9C55E, 0x3DE4F2FA,
        0x3DE02683, 0x3DDB5FFC, 0x3DD69F67, 0x3DD1E4CA, 0x3DCD3027, 0x3DC88184, 0x3DC3D8E5, 0x3DBF3650,
        0x3DBA99CB, 0x3DB6035C, 0x3DB17309, 0x3DACE8DB, 0x3DA864D8, 0x3DA3E70A, 0x3D9F6F79, 0x3D9AFE2F,
        0x3D969336, 0x3D922E9A, 0x3D8DD066, 0x3D8978A7, 0x3D852769, 0x3D80DCBD, 0x3D793161, 0x3D70B6AA,
        0x3D684978, 0x3D5FE9F0, 0x3D57983D, 0x3D4F5488, 0x3D471F01, 0x3D3EF7DC, 0x3D36DF4E, 0x3D2ED592,
        0x3D26DAE8, 0x3D1EEF96, 0x3D1713E7, 0x3D0F482D, 0x3D078CC1, 0x3CFFC40F, 0x3CF090D7, 0x3CE180CC,
        0x3CD294FA, 0x3CC3CE8E, 0x3CB52ED8, 0x3CA6B758, 0x3C9869C4, 0x3C8A481A, 0x3C78A952, 0x3C5D2469,
        0x3C420820, 0x3C275CB2, 0x3C0D2C91, 0x3BE70B08, 0x3BB4F547, 0x3B8450F8, 0x3B2AFCFA, 0x3AA5302E,
    ]
    static let norR = Float(bitPattern: 0x4069DDA4)  // ziggurat_nor_r_f
    static let norInvR = Float(bitPattern: 0x3E8C1D53)  // ziggurat_nor_inv_r_f
}

/// numpy's SeedSequence (bit_generator.pyx) reduced to what `default_rng(int)` needs: an integer seed's 32-bit
/// words hashed into a pool of four, then four 64-bit words of state. All arithmetic wraps at 32 bits.
enum SeedSequence {
    static let initA: UInt32 = 0x43B0_D7E5
    static let multA: UInt32 = 0x931E_8875
    static let initB: UInt32 = 0x8B51_F9DD
    static let multB: UInt32 = 0x58F3_8DED
    static let mixMultL: UInt32 = 0xCA01_F9DD
    static let mixMultR: UInt32 = 0x4973_F715

    /// `_int_to_uint32_array`: the seed's 32-bit words, lowest first (0 is one zero word).
    static func words(of seed: UInt64) -> [UInt32] {
        let low = UInt32(truncatingIfNeeded: seed)
        let high = UInt32(truncatingIfNeeded: seed >> 32)
        return high == 0 ? [low] : [low, high]
    }

    /// `SeedSequence(entropy).generate_state(4, np.uint64)`.
    static func state(entropy: [UInt32]) -> [UInt64] {
        var hashConst = initA
        func hashmix(_ input: UInt32) -> UInt32 {
            var value = input ^ hashConst
            hashConst = hashConst &* multA
            value = value &* hashConst
            return value ^ (value >> 16)
        }
        func mix(_ x: UInt32, _ y: UInt32) -> UInt32 {
            let result = (mixMultL &* x) &- (mixMultR &* y)
            return result ^ (result >> 16)
        }
        var pool = [UInt32](repeating: 0, count: 4)
        for i in 0..<4 {
            pool[i] = hashmix(i < entropy.count ? entropy[i] : 0)
        }
        for source in 0..<4 {
            for target in 0..<4 where source != target {
                pool[target] = mix(pool[target], hashmix(pool[source]))
            }
        }
        if entropy.count > 4 {
            for source in 4..<entropy.count {
                for target in 0..<4 {
                    pool[target] = mix(pool[target], hashmix(entropy[source]))
                }
            }
        }
        var generated = [UInt32](repeating: 0, count: 8)
        var stateConst = initB
        for i in 0..<8 {
            var value = pool[i % 4] ^ stateConst
            stateConst = stateConst &* multB
            value = value &* stateConst
            generated[i] = value ^ (value >> 16)
        }
        // uint32 pairs read as little-endian uint64
        return (0..<4).map { UInt64(generated[2 * $0]) | UInt64(generated[2 * $0 + 1]) << 32 }
    }
}

/// PCG64 (XSL-RR 128/64) as numpy implements it, the 128-bit state and increment as (high, low) UInt64 pairs.
struct PCG64: Sendable {
    static let multiplierHigh: UInt64 = 2_549_297_995_355_413_924
    static let multiplierLow: UInt64 = 4_865_540_595_714_422_341

    private var stateHigh: UInt64 = 0
    private var stateLow: UInt64 = 0
    private let incHigh: UInt64
    private let incLow: UInt64
    /// numpy hands out 64-bit draws as two 32-bit halves, low first, keeping the high half for the next call.
    private var buffered: UInt32? = nil

    /// `pcg64_set_seed(seed = words[0..<2], inc = words[2..<4])`: inc = (seq << 1) | 1, then step, add, step.
    init(seedState words: [UInt64]) {
        let initHigh = words.count > 0 ? words[0] : 0
        let initLow = words.count > 1 ? words[1] : 0
        let seqHigh = words.count > 2 ? words[2] : 0
        let seqLow = words.count > 3 ? words[3] : 0
        incHigh = (seqHigh << 1) | (seqLow >> 63)
        incLow = (seqLow << 1) | 1
        step()
        let (low, carry) = stateLow.addingReportingOverflow(initLow)
        stateLow = low
        stateHigh = stateHigh &+ initHigh &+ (carry ? 1 : 0)
        step()
    }

    /// state = state * multiplier + inc (mod 2^128).
    private mutating func step() {
        let product = stateLow.multipliedFullWidth(by: PCG64.multiplierLow)
        let high = product.high &+ stateHigh &* PCG64.multiplierLow &+ stateLow &* PCG64.multiplierHigh
        let (low, carry) = product.low.addingReportingOverflow(incLow)
        stateLow = low
        stateHigh = high &+ incHigh &+ (carry ? 1 : 0)
    }

    mutating func nextUInt64() -> UInt64 {
        step()
        let xored = stateHigh ^ stateLow
        let rotation = stateHigh >> 58
        return (xored &>> rotation) | (xored &<< ((64 &- rotation) & 63))
    }

    mutating func nextUInt32() -> UInt32 {
        if let half = buffered {
            buffered = nil
            return half
        }
        let next = nextUInt64()
        buffered = UInt32(truncatingIfNeeded: next >> 32)
        return UInt32(truncatingIfNeeded: next)
    }
}
