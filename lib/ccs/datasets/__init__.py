"""The paper's datasets, read from their real on-disk formats under one data root, with the prompts,
class names and video protocol of the paper and of the CLIP ecosystem.

Every dataset lives under ``root()``: ``$CCS_DATA``, else ``$XDG_DATA_HOME/ccs/data``, else
``~/.local/share/ccs/data``. Nothing here downloads behind your back: `load_classification` and
`load_video` only read, and fail at once (before any model is loaded) with a `DatasetNotFoundError`
or `DatasetError` that names the path and says what to do. ``ccs data`` lists what is present,
``ccs data --check`` opens every file a present dataset lists (`check`); ``ccs data fetch NAME``
downloads the datasets torchvision can download (`fetch`).

Expected layout under the root (``info(name)["layout"]`` says the same; ``a|b`` = either works):

=================  =======================================================================================
CIFAR-10           ``cifar-10-batches-py/{test_batch,batches.meta}`` (python pickles; `ccs data fetch`)
CIFAR-100          ``cifar-100-python/{test,meta}`` (python pickles; `ccs data fetch`)
Food-101           ``food-101/meta/test.json`` + ``food-101/images/<class>/<id>.jpg`` (`ccs data fetch`)
Country-211        ``country211/test/<ISO code>/*.jpg`` (`ccs data fetch`)
Oxford-Pets        ``oxford-iiit-pet/annotations/test.txt`` + ``oxford-iiit-pet/images/*.jpg`` (`ccs data fetch`)
Oxford-Pets-paper  ``oxford-iiit-pet/images/*.jpg`` (the same download; every image, see below)
ImageNet-A         ``imagenet-a/<wnid>/*.jpg`` (the released imagenet-a.tar, 200 WordNet-id folders)
ImageNet-R         ``imagenet-r/<wnid>/*.jpg`` (the released imagenet-r.tar, 200 WordNet-id folders)
MSR-VTT            ``msrvtt/[msrvtt_data/]MSRVTT_JSFUSION_test.csv`` (columns ``video_id,sentence``; the 1k-A
                   test split of CLIP4Clip's msrvtt_data.zip) + ``msrvtt/[MSRVTT/]videos/all/<video_id>.mp4``
MSVD               ``msvd/test_list.txt`` (one video id a line) + captions ``msvd/raw-captions.pkl`` (CLIP4Clip's
                   msvd_data.zip) | ``msvd/AllVideoDescriptions.txt`` (``<video id> <caption>`` lines) +
                   ``msvd/YouTubeClips/<video id>.avi``
DiDeMo             ``didemo/test_data.json`` (LocalizingMoments: records with ``video`` and ``description``),
                   optionally ``didemo/test_list.txt`` (restricts the videos), + ``didemo/videos/**/<video>[.ext]``
=================  =======================================================================================

The evaluation protocol (what makes a run's "original" number the one the paper and the ecosystem get):

* **Prompts and class names** are CLIP's, as the `clip-benchmark` package ships them
  (``en_zeroshot_classification_templates.json`` and ``en_classnames.json``, copied into
  ``ccs/data/clip_benchmark_*.json`` with their licence; `templates`, `classnames`): 18 templates for
  CIFAR-10/100, "a photo of {}, a type of food." for Food-101, five for Country-211, "a photo of a {},
  a type of pet." for Oxford-Pets; CLIP's country names for Country-211's ISO codes (`COUNTRY211_CODES`,
  the folders in order); CLIP's 37 pet breeds. The paper's code uses the same templates (its CIFAR-10
  ones serve its Pets too) and class names, except 20 of Country-211's, which it writes in ISO style
  ("Viet Nam", "Russian Federation", "Taiwan, Province of China", a garbled "RÃ©union", ...; its
  ``labels.py``): here they are CLIP's. CIFAR and Food-101 names come from the data (underscores to spaces, as
  CLIP's and the paper's lists have them; clip-benchmark passes CIFAR-100's raw names, e.g.
  "aquarium_fish"). ImageNet-A/-R use CLIP's 80 ImageNet templates and class names
  (`open_clip.zero_shot_metadata`), on their 200-class subsets as timm lists them
  (``timm/data/_info/imagenet_{a,r}_synsets.txt``).
* **Oxford-Pets in two forms.** ``Oxford-Pets`` (``pets``) is the benchmark: torchvision's 37-class test
  split. ``Oxford-Pets-paper`` (``pets-paper``) is what the paper's code measured (its
  ``load_image_data.py``): *every* image in ``images/`` (trainval and test, 7,390), labelled by the first
  token of the file name, which merges breeds (``american_bulldog`` and ``american_pit_bull_terrier`` are
  both "american": 35 classes named by those tokens), with the 18 CIFAR templates. The paper's Pets
  numbers are this set's, and they are far below CLIP's published Pets accuracy.
* **Classification labels** index the dataset's whole class list even when only part of it is on disk
  (Country-211, Pets, ImageNet-A/-R), so a partial copy is still the 211-, 37- or 200-way task.
* **Images** are resized and cropped exactly as open_clip's preprocessing does (PIL: shorter side to
  ``size``, bicubic, then the centre crop, then RGB), kept as uint8; `ccs.models.tensor_preprocess` then
  gives the same tensors as open_clip's ``preprocess`` (tests/test_protocol.py checks this against
  clip-benchmark's own evaluation).
* **Videos** (`load_video`) are decoded with PyAV; ``frames`` frames (12 for MSR-VTT and MSVD, 32 for
  DiDeMo) are taken at the centres of equal segments of the whole video (as the paper's uniform
  sampling; a shorter video repeats frames), resized and centre-cropped on tensors. Decoded frames are
  cached in ``ccs.cache.cache_dir("frames", ...)`` keyed by file path, size, mtime, frame count and size,
  written atomically. The captions depend on the ``protocol`` (`ccs.evalset.PROTOCOLS`): ``paper`` (the
  paper's code: the first caption of each video) or ``clip4clip`` (every MSVD caption as its own row;
  DiDeMo's descriptions of a video joined into one paragraph). MSR-VTT 1k-A has one caption a video, so
  only the pooling differs there (`ccs.evaluate.pool_frames`). A video of the MSVD or DiDeMo split that is
  not on disk is left out with a `DatasetWarning` that counts them (as CLIP4Clip does); MSR-VTT's must
  all be there. The returned `VideoSet` says whether the whole split is ranked (`VideoSet.full`): only
  then is its R@K comparable with a published one.

The package, one job a module:

- `ccs.datasets.registry`: every dataset's entry (`spec`, `names`), the data root (`root`), what is on
  disk (`info`), and the errors and the warning the loaders raise;
- `ccs.datasets.prompts`: the prompt templates and class names (`templates`, `classnames`,
  `COUNTRY211_CODES`, `PETS_PAPER_CLASSES`);
- `ccs.datasets.reading`: what the loaders share (a reproducible subset, a threaded map, and the
  unpickler that runs nothing a pickle names, `load_data_pickle`);
- `ccs.datasets.images`: the image-classification loaders (`load_classification`);
- `ccs.datasets.frames`: a video's frames, decoded (`decode_frames`) and cached (`cached_frames`);
- `ccs.datasets.videos`: the video splits and their captions (`load_video`);
- `ccs.datasets.files`: opening every file of a dataset (`check`) and downloading one (`fetch`);
- here: every public name of the modules above, as ``ccs.datasets.NAME``. The code looks a name up in
  the module that defines it: a test that replaces one patches that module (``datasets.frames``, not
  ``datasets``, for `decode_frames`).
"""

from __future__ import annotations

from ccs.datasets.files import check, fetch
from ccs.datasets.frames import cached_frames, decode_frames
from ccs.datasets.images import IMAGE_EXTENSIONS, load_classification
from ccs.datasets.prompts import COUNTRY211_CODES, PETS_PAPER_CLASSES, classnames, templates
from ccs.datasets.reading import load_data_pickle
from ccs.datasets.registry import (
    DATA_ENV,
    DEFAULT_SIZE,
    DatasetError,
    DatasetNotFoundError,
    DatasetWarning,
    UnknownDatasetError,
    info,
    names,
    root,
    spec,
)
from ccs.datasets.videos import VIDEO_EXTENSIONS, load_video
from ccs.evalset import EvalSet, VideoSet, check_protocol

__all__ = [
    "DATA_ENV",
    "DEFAULT_SIZE",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "COUNTRY211_CODES",
    "PETS_PAPER_CLASSES",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetWarning",
    "UnknownDatasetError",
    "root",
    "names",
    "spec",
    "info",
    "templates",
    "classnames",
    "load_data_pickle",
    "load_classification",
    "decode_frames",
    "cached_frames",
    "load_video",
    "check",
    "fetch",
    "EvalSet",
    "VideoSet",
    "check_protocol",
]
