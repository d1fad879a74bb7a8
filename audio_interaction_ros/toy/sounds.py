"""Sound primitives of the toy's training data: tones, beeps, coloured noise, room and band.

Plain numpy at 16 kHz; every random choice comes from the caller's generator, so a build is
reproducible from its seed.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ..core.protocol import SAMPLE_RATE_HZ

# Other tones keep every partial out of this band so they never look like a ~1 kHz beep.
BEEP_GUARD_HZ = (780.0, 1280.0)
TRIM_DB = -50.0  # samples quieter than this (re the peak) at either end of speech are trimmed


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def fade(signal: NDArray[np.float32], fade_s: float = 0.005) -> NDArray[np.float32]:
    n = min(len(signal) // 2, int(fade_s * SAMPLE_RATE_HZ))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        signal[:n] *= ramp
        signal[-n:] *= ramp[::-1]
    return signal


def sine(freq_hz: float, seconds: float, amp: float, phase: float = 0.0) -> NDArray[np.float32]:
    """Return a pure tone with 5 ms fades (no clicks)."""
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return fade((amp * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32))


def beep(seconds: float, amp: float, freq_hz: float = 1000.0) -> NDArray[np.float32]:
    """Return the sound the toy answers with "I hear a beep."."""
    return sine(freq_hz, seconds, amp)


def fft_len(n: int) -> int:
    """Return a power of two >= n.

    numpy's FFT is orders of magnitude slower on lengths with large prime factors, and utterance or
    burst lengths are arbitrary.
    """
    return 1 << max(0, n - 1).bit_length()


def noise(rng: np.random.Generator, n: int, colour: str, rms: float) -> NDArray[np.float32]:
    """White, pink (1/f) or brown (1/f^2) noise with the given RMS."""
    if colour == "white" or n < 2:
        white = rng.standard_normal(n)
    else:
        size = fft_len(n)
        spectrum = np.fft.rfft(rng.standard_normal(size))
        freqs = np.fft.rfftfreq(size)
        freqs[0] = freqs[1]
        spectrum /= np.sqrt(freqs) if colour == "pink" else freqs
        white = np.fft.irfft(spectrum, size)[:n]
    white = white / (np.sqrt(np.mean(white ** 2)) + 1e-12)
    return (rms * white).astype(np.float32)


def other_tone(rng: np.random.Generator, seconds: float, amp: float) -> NDArray[np.float32]:
    """Return a tone that is not a beep: sine, chord or harmonic tone with no energy near 1 kHz."""
    while True:
        base = (log_uniform(rng, 90.0, 700.0) if rng.random() < 0.55
                else log_uniform(rng, 1450.0, 6500.0))
        harmonics = int(rng.integers(1, 6)) if base < 700 and rng.random() < 0.5 else 1
        partials = [base * h for h in range(1, harmonics + 1)]
        if rng.random() < 0.2:
            partials.append(base * rng.uniform(1.2, 1.6))
        if all(not BEEP_GUARD_HZ[0] <= f <= BEEP_GUARD_HZ[1] and f < 7800 for f in partials):
            break
    signal = sum(sine(f, seconds, 1.0 / (i + 1), rng.uniform(0, 2 * np.pi))
                 for i, f in enumerate(partials))
    signal = signal / (np.max(np.abs(signal)) + 1e-12)
    return fade((amp * signal).astype(np.float32), 0.01)


def band_limit(rng: np.random.Generator, signal: NDArray[np.float32]) -> NDArray[np.float32]:
    """Apply a random mic/loudspeaker band: high-pass 60-400 Hz, low-pass 2.5-8 kHz, tilt."""
    size = fft_len(len(signal))
    spectrum = np.fft.rfft(signal, size)
    freqs = np.fft.rfftfreq(size, 1 / SAMPLE_RATE_HZ)
    low, high = rng.uniform(60, 400), rng.uniform(2500, 8000)
    gain = 1 / np.sqrt(1 + (low / np.maximum(freqs, 1.0)) ** 4)
    gain *= 1 / np.sqrt(1 + (freqs / high) ** 8)
    gain *= (np.maximum(freqs, 100.0) / 1000.0) ** rng.uniform(-0.4, 0.4)
    out = np.fft.irfft(spectrum * gain, size)[:len(signal)].astype(np.float32)
    return out / (np.max(np.abs(out)) + 1e-12)


def reverberate(rng: np.random.Generator, signal: NDArray[np.float32]) -> NDArray[np.float32]:
    """Place the sound in a small room.

    Exponentially decaying noise as impulse response (RT60 0.1-0.4 s); the result is trimmed again
    at -50 dB, so the labelled end includes the audible tail.
    """
    rt60 = rng.uniform(0.1, 0.4)
    n_ir = int(rt60 * SAMPLE_RATE_HZ)
    t = np.arange(n_ir) / SAMPLE_RATE_HZ
    ir = rng.standard_normal(n_ir) * 10 ** (-3 * t / rt60)
    ir[0] = 1.0 / rng.uniform(0.2, 1.0)  # direct path vs reverberant energy
    n = len(signal) + n_ir - 1
    size = fft_len(n)
    wet = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(ir, size), size)[:n]
    wet = trim(wet.astype(np.float32))
    return wet / (np.max(np.abs(wet)) + 1e-12)


def trim(samples: NDArray[np.float32]) -> NDArray[np.float32]:
    """Cut leading/trailing near-silence so an utterance's end is where its voice ends."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak <= 0:
        return samples[:0]
    loud = np.flatnonzero(np.abs(samples) >= peak * 10 ** (TRIM_DB / 20))
    return np.ascontiguousarray(samples[loud[0]:loud[-1] + 1])
