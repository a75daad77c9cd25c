"""Render: re-voice a template video with new audio, streaming decode -> model in batches -> blend -> encode, the
steps of consecutive batches overlapping in their own threads.

Memory stays flat with the audio's length: frames are decoded, blended and encoded a batch at a time, and the
audio to mux is decoded as the video advances. When the audio outlasts the template, the template plays forwards
then backwards (ping-pong), read back from a frame cache on disk (a temp file of JPEG-compressed frames,
LOOP_JPEG, about a tenth of the raw size) so no frame is decoded twice and no jump is visible.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Queue

import cv2
import numpy as np
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from hygie_lib.audio import Mel, iter_audio, load_audio
from hygie_lib.blend import BLENDS, paste_mouth
from hygie_lib.checkpoint import DataInfo
from hygie_lib.crops import Crops, crop, crop_to_crop, grid_boxes, recrop
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError, atomic_path, check_choice
from hygie_lib.retrieve import MouthLibrary, real_detail
from hygie_lib.shape import crop_points
from hygie_lib.video import VideoInfo, VideoWriter, iter_frames, probe_video

AUDIO_SR = 48000  # sample rate of the muxed output audio (the model hears its own SR via the mel)
SILENCE = 1e-4  # peak amplitude below which an audio file counts as silent
# template frames cached for replay: JPEG at quality 95 without chroma subsampling (PSNR ~47 dB; the output is
# H.264 at crf 18 anyway), about a tenth of the raw size
LOOP_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
READ_AHEAD = 8  # cached template frames decoded ahead of need when replaying
MOUTHS = ("generate", "retrieve", "blend")  # render.mouth: draw the mouth, paste a real one, or draw it from a real one
METADATA = {"comment": "Synthetic lip-sync made by HygieSync: the mouth region is generated from the audio."}


def pingpong_index(k: int, n: int) -> int:
    """Template frame shown at output frame k: 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... (none shown twice in a row)."""
    if n == 1:
        return 0
    k %= 2 * n - 2
    return k if k < n else 2 * n - 2 - k


def pingpong_frames(
    video: str | os.PathLike, fps: float, n_template: int, n_out: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(template index, RGB frame) for output frames 0..n_out-1, playing the template back and forth.

    The first pass streams from the decoder; later passes read the frames back from a cache file (JPEG). A worker
    thread encodes the cache and decodes it ahead of need (OpenCV releases the GIL), off the caller's path.
    """
    looping, decoded = n_out > n_template, 0
    with tempfile.TemporaryFile(prefix="hygie-frames-") as cache, ThreadPoolExecutor(1) as worker:
        fd, stored, end = cache.fileno(), [], 0  # stored[i]: frame i's (offset, length) in the cache, once written

        def store(frame: np.ndarray) -> tuple[int, int]:  # in the worker, in order: it alone moves `end`
            nonlocal end
            jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), LOOP_JPEG)[1]
            at, end = end, end + os.pwrite(fd, jpeg, end)
            return at, len(jpeg)

        def load(i: int) -> np.ndarray:  # in the worker, after every store
            at, length = stored[i].result()
            jpeg = np.frombuffer(os.pread(fd, length, at), np.uint8)
            return cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

        for i, frame in zip(range(min(n_out, n_template)), iter_frames(video, fps)):
            if looping:
                stored.append(worker.submit(store, frame))
            decoded = i + 1
            yield i, frame
        if decoded < min(n_out, n_template):
            raise HygieError(
                f"{video}: decoded {decoded} frames but its prepared crops have {n_template}; rerun `dvc repro`."
            )
        replay = (pingpong_index(k, n_template) for k in range(n_template, n_out))
        ahead = deque((i, worker.submit(load, i)) for i in itertools.islice(replay, READ_AHEAD))
        while ahead:
            i, loading = ahead.popleft()
            ahead.extend((j, worker.submit(load, j)) for j in itertools.islice(replay, 1))
            yield i, loading.result()


def reference_indices(face: np.ndarray) -> np.ndarray:
    """For each template frame, the face frame half the template away that serves as its reference crop.

    As in training, the reference is never the frame itself or its neighbours, and it moves smoothly with
    the template so the reference's small differences do not flicker.
    """
    n, with_face = len(face), np.flatnonzero(face)
    wanted = (np.arange(n) + n // 2) % n
    after = with_face[np.searchsorted(with_face, wanted).clip(0, len(with_face) - 1)]  # nearest face frame at or after
    before = with_face[(np.searchsorted(with_face, wanted, side="right") - 1).clip(0)]  # ... and at or before
    return np.where(np.abs(wanted - before) <= np.abs(after - wanted), before, after)


def check_audio(path: str | os.PathLike, sr: int = 16000) -> None:
    """Raise a HygieError if an audio file is empty or silent (read as a stream)."""
    peak = max((float(np.abs(y).max()) for y in iter_audio(path, sr)), default=None)
    if peak is None:
        raise HygieError(f"{path}: the audio stream is empty (0 samples). Re-export the file with its sound.")
    if peak < SILENCE:
        raise HygieError(f"{path}: the audio is silent (peak below {SILENCE}). Give a file with speech in it.")


Images = Iterator[tuple[int, np.ndarray, tuple[int, int]]]  # (template frame, its image, the image's origin)


def detail_size(template: Crops) -> int:
    """Side, in frame pixels, of the squares of the frame's pixel grid that retrieve and blend compose their mouths
    in (`grid_boxes`): the template's largest mouth box and a pixel of margin on each side."""
    sides = template.boxes[template.face, 2]
    return int(np.ceil(sides.max())) + 2 if len(sides) else template.size


class Painter:
    """The template's images with new mouths pasted in, a batch of output frames at a time: the one place output
    frames are made, for `render` (whole frames, `video_images`) and live sessions (mouth regions, hygie_lib.live).

    `images` yields, for output frames 0, 1, ..., the template frame shown, its image (the whole frame, or a part
    of it) and where that image's top-left corner lies in the frame. `mouth` (MOUTHS): "generate" draws the mouth
    with the model; "retrieve" pastes the real mouth of the `library` that `paint` is given for each frame; "blend"
    has the model draw it, shown that real mouth as its reference, and keeps the real mouth's fine detail
    (`real_detail`); both compose the mouth in a square of the frame's own pixel grid (`detail_size`), so neither
    the real mouth nor the frame around it is resampled through the model's crop size.
    Frames without a face pass through untouched.
    Seconds spent per step are added to `seconds`; `name` is the template's, for messages.
    """

    def __init__(
        self,
        model: MouthModel,
        template: Crops,
        images: Images,
        *,
        name: str | os.PathLike,
        blend: str = "poisson",
        mouth: str = "generate",
        library: MouthLibrary | None = None,
        seconds: dict[str, float] | None = None,
    ) -> None:
        model.check_crops(template, name)
        check_choice("render.mouth", mouth, MOUTHS)
        check_choice("render.blend", blend, tuple(BLENDS))
        if model.backend == "library" and mouth != "retrieve":
            raise HygieError(
                f"a mouth library draws no mouths, so render.mouth {mouth} needs models/best.pt: use retrieve."
            )
        if mouth != "generate" and library is None:
            raise HygieError(f"render.mouth {mouth}: retrieve and blend need a mouth library, models/library.npz.")
        self.model, self.template, self.blend, self.mouth, self.library = model, template, blend, mouth, library
        self.images, self.refs = images, reference_indices(template.face)
        self.size = template.size if mouth == "generate" else detail_size(template)  # pasted crops' side
        self.k = 0  # the next output frame
        self.seconds = defaultdict(float) if seconds is None else seconds
        self.threads = ThreadpoolController()  # the native thread pools loaded (numpy's, scipy's and OpenCV's BLAS)

    def paint(
        self,
        n: int,
        heard: np.ndarray | None,
        picks: np.ndarray | None = None,
        wanted: np.ndarray | None = None,
    ) -> list[tuple[int, np.ndarray, tuple[int, int]]]:
        """The next `n` output frames, as `images` gives them, with the new mouths pasted in. `heard` [n, ...]: what
        the model heard for each (`MouthModel.hear`; unused by retrieve); `picks` [n]: each frame's library mouth
        (retrieve, blend), reshaped to `wanted` [n, K], the shapes the audio asks for."""
        with self.one_thread_each():
            return self.paste(self.draw(self.start(n, heard, picks, wanted)))

    @contextmanager
    def one_thread_each(self) -> Iterator[None]:
        """One BLAS thread and one OpenCV thread while painting, then as before: the matrices and images here are
        small, the painter's steps already run in threads of their own, and idle BLAS threads spinning for work (or
        OpenCV's splitting each small image between cores) take the CPU that the encoder and the model need (README,
        "Figures")."""
        opencv = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            with self.threads.limit(limits=1, user_api="blas"):
                yield
        finally:
            cv2.setNumThreads(opencv)

    def start(
        self, n: int, heard: np.ndarray | None, picks: np.ndarray | None = None, wanted: np.ndarray | None = None
    ) -> _Batch:
        """`paint`'s first step, which needs no model: the next `n` images, and the mouths and conditions the model
        takes (render_frames starts a batch in one thread while the model draws the one before it in another)."""
        seconds, template, model, size = self.seconds, self.template, self.model, self.size
        ks = np.arange(self.k, self.k + n)
        self.k += n
        t = time.perf_counter()
        chunk = [next(self.images) for _ in ks]
        idx = np.array([i for i, _, _ in chunk], np.int64)
        seconds["decode"] += _lap(t)
        t = time.perf_counter()
        face = template.face[idx]
        f = idx[face]  # template frames with a face
        boxes = template.boxes[f]
        b = _Batch(chunk, face, f, boxes, boxes)  # pasted where cropped unless on the pixel grid (below)
        space, landmarks = model.shapes.space, template.landmarks[f]
        if self.mouth == "generate":
            b.ref = template.crops[self.refs[f]] if model.reference else None
        elif len(f):  # the library's real mouths, given the wanted shape at the template's pose, on the frame's
            lib, want = picks[face], wanted[face]  # pixel grid: pasted (retrieve), or giving the detail (blend)
            b.paste_boxes = grid_boxes(b.boxes, size)
            to_crop = np.stack([crop_to_crop(to, size, box, size) for to, box in zip(b.paste_boxes, b.boxes)])
            b.real = self.library.mouths(lib, crop_points(space, want, landmarks, b.boxes, size), size, to_crop)
            b.points = crop_points(space, want, landmarks, b.paste_boxes, size)  # the wanted mouths in `real`
            if self.mouth == "blend":  # the generator's reference: the same mouths in its own crops
                s = template.size
                small = [cv2.resize(r, (s, s), interpolation=cv2.INTER_AREA) for r in b.real]
                b.ref = np.stack([recrop(r, to, box, s) for r, to, box in zip(small, b.paste_boxes, b.boxes)])
        seconds["crops"] += _lap(t)
        t = time.perf_counter()
        if self.mouth != "retrieve" and len(f):
            b.cond = model.conditions(heard[face], landmarks, b.boxes)
        seconds["cond"] += _lap(t)
        return b

    def draw(self, b: _Batch) -> _Batch:
        """`paint`'s second step: the model draws the mouths of a started batch (retrieve's are the library's)."""
        t = time.perf_counter()
        if len(b.frames):
            crops = self.template.crops[b.frames]
            b.mouths = b.real if self.mouth == "retrieve" else self.model.generate(crops, b.ref, b.cond)
        self.seconds["model"] += _lap(t)
        return b

    def paste(self, b: _Batch) -> list[tuple[int, np.ndarray, tuple[int, int]]]:
        """`paint`'s last step: a drawn batch's mouths (given real detail, blend) pasted into its images."""
        seconds, template, model, size = self.seconds, self.template, self.model, self.size
        f, mouths = b.frames, b.mouths
        t = time.perf_counter()
        if self.mouth == "generate":
            masks = [model.mask] * len(f)
        elif len(f):  # the training mask, moved onto the pixel grid
            masks = [recrop(model.mask, box, to, size) for box, to in zip(b.boxes, b.paste_boxes)]
        if self.mouth == "blend" and len(f):
            space = model.shapes.space
            landmarks = template.landmarks[f]
            own = crop_points(space, space.coefficients(landmarks), landmarks, b.paste_boxes, size)
            drawn = np.stack([recrop(m, box, to, len(m)) for m, box, to in zip(mouths, b.boxes, b.paste_boxes)])
            faced = [(image, (x0, y0, 0)) for (_, image, (x0, y0)), has in zip(b.chunk, b.face) if has]
            frames = np.stack([crop(image, to - origin, size) for (image, origin), to in zip(faced, b.paste_boxes)])
            mouths = real_detail(drawn, b.real, frames, b.points, own)
        seconds["detail"] += _lap(t)
        out = []
        for j, has, (i, image, (x0, y0)) in zip(np.cumsum(b.face) - 1, b.face, b.chunk):
            t = time.perf_counter()
            if has:
                box = b.paste_boxes[j] - np.array([x0, y0, 0.0])  # in the image's own coordinates
                image = paste_mouth(image, mouths[j], box, masks[j], mode=self.blend)
            seconds["blend"] += _lap(t)
            out.append((i, image, (x0, y0)))
        return out


@dataclass
class _Batch:
    """A `Painter`'s started batch: its images, their face frames and boxes, and what the model will take."""

    chunk: list[tuple[int, np.ndarray, tuple[int, int]]]  # (template frame, image, origin) per output frame
    face: np.ndarray  # [n] bool: whether each shows a face
    frames: np.ndarray  # [F] the template frames of those that do
    boxes: np.ndarray  # [F, 3] their crop boxes
    paste_boxes: np.ndarray  # [F, 3] where their new mouths are pasted (the frame's pixel grid, retrieve and blend)
    ref: np.ndarray | None = None  # [F, S, S, 3] the model's reference crops
    cond: np.ndarray | None = None  # [F, C] its conditions
    real: np.ndarray | None = None  # [F, D, D, 3] the library mouths, reshaped (retrieve, blend)
    points: np.ndarray | None = None  # [F, M, 2] the wanted mouth points in `real`
    mouths: np.ndarray | None = None  # [F, S, S, 3] the mouths drawn (retrieve: `real`)


def video_images(video: str | os.PathLike, fps: float, n_template: int, n_out: int) -> Images:
    """A `Painter`'s images from the template video: whole frames, played ping-pong (`pingpong_frames`)."""
    return ((i, frame, (0, 0)) for i, frame in pingpong_frames(video, fps, n_template, n_out))


def render_frames(
    model: MouthModel,
    template: Crops,
    template_video: str | os.PathLike,
    mel: Mel,
    *,
    blend: str = "poisson",
    batch: int = 32,
    mouth: str = "generate",
    library: MouthLibrary | None = None,
    seconds: dict[str, float] | None = None,
) -> Iterator[np.ndarray]:
    """Output RGB frames, one per video frame of `mel`: template frames with the mouth drawn from the audio (a
    `Painter` fed what the model hears of the whole audio; see there for `mouth`, `library`, `seconds`)."""
    images = video_images(template_video, template.fps, len(template.crops), mel.n_frames)
    painter = Painter(
        model, template, images, name=template_video, blend=blend, mouth=mouth, library=library, seconds=seconds
    )
    t = time.perf_counter()
    # the whole audio at once: a shape model smooths its mouth shapes over time; retrieve draws nothing
    heard = model.hear(mel) if mouth != "retrieve" else None
    wanted, picks = (None, None) if mouth == "generate" else _retrieve(model, mel, library)
    painter.seconds["cond"] += _lap(t)

    def start(k0: int) -> Future:  # the batch from output frame k0, started in the starter thread
        n = min(batch, mel.n_frames - k0)
        rows, pick, want = (None if a is None else a[k0 : k0 + n] for a in (heard, picks, wanted))
        return starter.submit(painter.start, n, rows, pick, want)

    # a pipeline of three threads: while the model draws a batch, the next one is started (decoded, its library
    # mouths reshaped) and the one before it is pasted; the output frames are the same as `paint`'s
    with painter.one_thread_each(), ThreadPoolExecutor(1) as starter, ThreadPoolExecutor(1) as paster:
        started, before = start(0), None
        for k0 in range(0, mel.n_frames, batch):
            b = started.result()
            if k0 + batch < mel.n_frames:
                started = start(k0 + batch)
            pasted = paster.submit(painter.paste, painter.draw(b))
            if before is not None:
                yield from (frame for _, frame, _ in before.result())
            before = pasted
        yield from (frame for _, frame, _ in before.result())


def _retrieve(model: MouthModel, mel: Mel, library: MouthLibrary | None) -> tuple[np.ndarray, np.ndarray]:
    """The shape [n, K] the audio asks for at every output frame, and the library mouth [n] that shows it best:
    nearest that shape, along a smooth path."""
    if library.size != model.data.img_size:
        raise HygieError(
            f"the mouth library gives {library.size}px crops, the model {model.data.img_size}px: `dvc repro`."
        )
    wanted = model.mouth_shapes(mel)
    return wanted, library.choose(wanted / model.shapes.space.scale)


def render(
    model: MouthModel,
    template: Crops,
    template_video: str | os.PathLike,
    mel: Mel,
    audio: str | os.PathLike,
    out: str | os.PathLike,
    *,
    blend: str = "poisson",
    batch: int = 32,
    mouth: str = "generate",
    library: MouthLibrary | None = None,
    preset: str = "superfast",
    match_level: bool = True,
    progress: bool = True,
) -> dict[str, float]:
    """Write `out` (H.264 + AAC, atomically; MP4, MOV or MKV by its suffix): the re-voiced template, `audio` muxed in.

    `mel` is what the model hears, at the training recording's level (`Mel.at_level`: a quieter or louder recording
    of speech is not a closed or a gaping mouth) unless `match_level` is False, as for the recording's own audio;
    `audio` (any audio or video file) is decoded again at AUDIO_SR as the video advances and muxed in, so its
    duration is the output's. Encoding runs in a thread of its own (PyAV releases the GIL), beside `render_frames`'
    three; `preset` is libx264's speed/size trade-off. Returns the seconds spent per step (decode, crops, cond,
    model, detail, blend, encode), each in its thread: they overlap.
    """
    info = check_template_video(template_video)
    seconds: dict[str, float] = defaultdict(float)
    if match_level:
        loud = model.shapes.predictor.loud
        gain = mel.gain_to(loud)
        if progress and np.isfinite(loud):
            print(f"{audio}: heard {gain:+.1f} dB, at the training recording's level")
        elif progress:
            print(f"{audio}: heard as it is (the model was made before models kept their recording's level)")
        mel = mel.gained(gain)
    frames = render_frames(
        model, template, template_video, mel, blend=blend, batch=batch, mouth=mouth, library=library, seconds=seconds
    )
    sound = iter_audio(audio, AUDIO_SR)
    with atomic_path(out) as tmp:
        with VideoWriter(
            tmp, template.fps, info.width, info.height, audio=sound, sr=AUDIO_SR, preset=preset, metadata=METADATA
        ) as writer:
            # room for a whole batch: the encoder works through one while the next is made; bounded: memory stays flat
            queue: Queue[np.ndarray | None] = Queue(maxsize=batch + 8)

            def encode() -> None:
                error = None
                while (frame := queue.get()) is not None:  # after an error, keep draining so the producer never blocks
                    t = time.perf_counter()
                    try:
                        error or writer.write(frame)
                    except Exception as e:  # noqa: BLE001 - re-raised in the main thread by encoded.result()
                        error = e
                    seconds["encode"] += _lap(t)
                if error:
                    raise error

            with ThreadPoolExecutor(1) as pool:
                encoded = pool.submit(encode)
                try:
                    for frame in tqdm(frames, total=mel.n_frames, desc="render", unit="frame", disable=not progress):
                        if encoded.done():  # the encoder failed: stop and raise its error below
                            break
                        queue.put(frame)
                finally:
                    queue.put(None)
                encoded.result()
            t = time.perf_counter()  # leaving the block flushes the encoders
        seconds["encode"] += _lap(t)
    return dict(seconds)


def check_template_video(video: str | os.PathLike) -> VideoInfo:
    """The template's VideoInfo; a HygieError if it cannot be re-encoded (H.264 needs an even frame size)."""
    info = probe_video(video)
    if info.width % 2 or info.height % 2:
        raise HygieError(f"{video}: H.264 needs an even frame size, got {info.width}x{info.height}. Crop or scale it.")
    return info


def _lap(t0: float) -> float:
    """Seconds since t0."""
    return time.perf_counter() - t0


def prepare_template(video: str | os.PathLike, data: DataInfo, *, min_confidence: float = 0.5) -> Crops:
    """A template's landmarks and crops computed on the fly, made as the model's training crops were (`data`)."""
    from hygie_lib.crops import build_crops
    from hygie_lib.landmarks import check_face_rate, detect_video

    landmarks = detect_video(video, data.fps, min_confidence=min_confidence)
    check_face_rate(landmarks, video, min_rate=0.0)  # frames without a face pass through, but some must have one
    return build_crops(video, landmarks, data.fps, size=data.img_size, pad=data.mouth_pad, alpha=data.ema_alpha)


def audio_features(path: str | os.PathLike, data: DataInfo) -> Mel:
    """The log-mel of any audio or video file, made as the model's training mel was; a HygieError if it is silent."""
    check_audio(path, data.sr)
    try:
        return Mel.of(
            load_audio(path, data.sr),
            data.sr,
            fps=data.fps,
            n_mels=data.n_mels,
            per_frame=data.mel_per_frame,
            n_fft=data.n_fft,
        )
    except HygieError as e:
        raise HygieError(f"{path}: {e} Give a longer audio file.") from e
