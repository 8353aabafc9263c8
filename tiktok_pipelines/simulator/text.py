"""Built-in vocabulary: countries, languages, categories, caption templates, hashtags, comments.

The generated catalog must carry real signal for content tagging: every category has its own
keywords (translated where a template language has them) and its own hashtags, mixed with
signal-free platform tags (#fyp, #viral) as on the real app.
"""

from __future__ import annotations

AGE_BANDS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
AGE_BAND_WEIGHTS = (0.10, 0.32, 0.28, 0.16, 0.09, 0.05)
GENDERS = ("female", "male", "unknown")
GENDER_WEIGHTS = (0.49, 0.47, 0.04)
ACTIVITY_LEVELS = ("low", "medium", "high")
ACTIVITY_WEIGHTS = (0.45, 0.40, 0.15)
SESSIONS_PER_DAY = (0.4, 1.6, 4.5)  # mean sessions a day by activity level

# (country, language, weight)
COUNTRIES = (
    ("US", "en", 0.20), ("GB", "en", 0.05), ("IN", "en", 0.05), ("MX", "es", 0.08),
    ("ES", "es", 0.04), ("BR", "pt", 0.10), ("ID", "id", 0.14), ("TW", "zh", 0.06),
    ("JP", "ja", 0.07), ("FR", "fr", 0.06), ("DE", "de", 0.06), ("VN", "vi", 0.09),
)
LANGUAGES = ("en", "es", "pt", "id", "zh", "ja", "fr", "de", "vi")

# Fallback categories, with keywords in English and translations for the languages that have them.
CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "food": {"en": ("recipe", "street food", "ramen", "pasta", "dessert"), "es": ("receta", "comida callejera", "tacos"),
             "id": ("resep", "makanan enak", "bakso"), "zh": ("美食", "家常菜", "甜品"), "pt": ("receita", "comida de rua")},
    "travel": {"en": ("road trip", "beach", "hidden gem", "hotel tour"), "es": ("viaje", "playa", "mochilero"),
               "id": ("jalan-jalan", "pantai", "liburan"), "zh": ("旅行", "海边", "自驾游"), "pt": ("viagem", "praia")},
    "gaming": {"en": ("speedrun", "boss fight", "ranked match", "gameplay"), "es": ("partida", "videojuego"),
               "id": ("main game", "mabar"), "zh": ("游戏", "上分", "通关"), "pt": ("partida", "jogatina")},
    "music": {"en": ("cover song", "guitar", "piano", "new single"), "es": ("canción", "guitarra", "concierto"),
              "id": ("lagu", "cover lagu", "gitar"), "zh": ("翻唱", "吉他", "新歌"), "pt": ("música", "violão")},
    "dance": {"en": ("dance challenge", "choreo", "tutorial"), "es": ("baile", "coreografía", "reto de baile"),
              "id": ("joget", "tantangan dance"), "zh": ("舞蹈", "手势舞", "翻跳"), "pt": ("dança", "coreografia")},
    "comedy": {"en": ("prank", "skit", "plot twist", "funny"), "es": ("broma", "sketch", "humor"),
               "id": ("lucu", "prank", "ngakak"), "zh": ("搞笑", "段子", "恶搞"), "pt": ("pegadinha", "humor")},
    "beauty": {"en": ("makeup", "skincare", "glow up"), "es": ("maquillaje", "cuidado de la piel"),
               "id": ("makeup", "skincare", "tutorial makeup"), "zh": ("化妆", "护肤", "美妆"), "pt": ("maquiagem", "skincare")},
    "fashion": {"en": ("outfit", "ootd", "thrift haul", "streetwear"), "es": ("outfit", "moda", "look del día"),
                "id": ("outfit", "fashion hijab", "ootd"), "zh": ("穿搭", "时尚", "汉服"), "pt": ("look", "moda")},
    "sports": {"en": ("football", "basketball", "highlights", "training"), "es": ("fútbol", "golazo", "entrenamiento"),
               "id": ("sepak bola", "badminton"), "zh": ("篮球", "足球", "比赛"), "pt": ("futebol", "golaço")},
    "pets": {"en": ("puppy", "kitten", "cat", "dog"), "es": ("perrito", "gatito", "mascota"),
             "id": ("kucing", "anjing lucu"), "zh": ("萌宠", "猫咪", "狗狗"), "pt": ("cachorro", "gatinho")},
    "education": {"en": ("study tips", "history fact", "math trick", "science"), "es": ("datos curiosos", "historia"),
                  "id": ("belajar", "fakta unik"), "zh": ("知识", "学习", "科普"), "pt": ("curiosidades", "estudo")},
    "tech": {"en": ("unboxing", "smartphone", "gadget", "setup tour"), "es": ("unboxing", "celular", "tecnología"),
             "id": ("unboxing", "hp baru"), "zh": ("数码", "开箱", "手机"), "pt": ("unboxing", "celular")},
    "diy": {"en": ("diy", "home hack", "craft", "room makeover"), "es": ("manualidades", "hazlo tú mismo"),
            "id": ("kerajinan", "diy"), "zh": ("手工", "改造", "小妙招"), "pt": ("artesanato", "faça você mesmo")},
    "fitness": {"en": ("workout", "gym", "home workout", "running"), "es": ("rutina", "gimnasio", "ejercicio"),
                "id": ("olahraga", "workout"), "zh": ("健身", "减脂", "跑步"), "pt": ("treino", "academia")},
    "cars": {"en": ("car review", "supercar", "drift", "detailing"), "es": ("coche", "carro", "motor"),
             "id": ("mobil", "modifikasi"), "zh": ("汽车", "改装", "试驾"), "pt": ("carro", "motor")},
    "family": {"en": ("mom life", "baby", "parenting"), "es": ("familia", "bebé", "mamá"),
               "id": ("keluarga", "bayi"), "zh": ("亲子", "宝宝", "家庭"), "pt": ("família", "bebê")},
    "news": {"en": ("breaking news", "update", "explained"), "es": ("noticias", "última hora"),
             "id": ("berita", "info terkini"), "zh": ("新闻", "资讯", "热点"), "pt": ("notícias", "urgente")},
    "art": {"en": ("drawing", "painting", "timelapse art"), "es": ("dibujo", "pintura", "arte"),
            "id": ("menggambar", "lukisan"), "zh": ("绘画", "手绘", "艺术"), "pt": ("desenho", "pintura")},
}

CATEGORY_HASHTAGS: dict[str, tuple[str, ...]] = {
    "food": ("foodtok", "recipe", "cooking", "streetfood", "yummy", "美食"),
    "travel": ("traveltok", "wanderlust", "travel", "beachvibes", "roadtrip"),
    "gaming": ("gamingtok", "gamer", "gameplay", "esports", "speedrun"),
    "music": ("musictok", "cover", "singing", "guitar", "newmusic"),
    "dance": ("dancechallenge", "dancetok", "choreography", "dance"),
    "comedy": ("comedy", "funny", "prank", "skit", "lol"),
    "beauty": ("makeup", "skincare", "beautytok", "glowup"),
    "fashion": ("ootd", "fashiontok", "outfit", "streetwear", "thrift"),
    "sports": ("football", "basketball", "sportstok", "highlights", "goal"),
    "pets": ("petsoftiktok", "catsoftiktok", "dogsoftiktok", "cute"),
    "education": ("learnontiktok", "edutok", "studytips", "didyouknow"),
    "tech": ("techtok", "unboxing", "gadgets", "smartphone"),
    "diy": ("diy", "lifehack", "crafts", "homedecor"),
    "fitness": ("gymtok", "fitness", "workout", "fittok"),
    "cars": ("carsoftiktok", "cartok", "supercar", "drift"),
    "family": ("momlife", "parenting", "familytime", "baby"),
    "news": ("news", "breakingnews", "explained", "update"),
    "art": ("arttok", "drawing", "painting", "artist"),
}
GENERIC_HASHTAGS = ("fyp", "foryou", "viral", "trending", "foryoupage")

# Caption templates per language: (prefix, suffix) around a category keyword.
CAPTION_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (("POV: your first ", " 😂"), ("Rating every ", " in town"), ("Wait for the end… ", " edition"),
           ("I tried the viral ", " so you don't have to"), ("Day 3 of ", " until I get famous")),
    "es": (("Probando el ", " más viral"), ("Mi primera vez con ", " 😅"), ("Espera al final: ", " edición"),
           ("Así se hace el ", " de verdad")),
    "pt": (("Testei o ", " viral"), ("Minha primeira vez com ", " 😅"), ("Espera o final: ", " 🔥")),
    "id": (("Nyobain ", " yang lagi viral"), ("Hari ke-3 ", " sampai terkenal"), ("Tunggu sampai akhir: ", " 🔥")),
    "zh": (("第一次尝试", "，太好玩了"), ("今天分享", "，记得点赞"), ("看到最后！", "真的绝了")),
    "ja": (("初めての", "やってみた"), ("話題の", "を試してみた！"), ("最後まで見て！", "編")),
    "fr": (("J'ai testé le ", " viral"), ("Ma première fois avec ", " 😂"), ("Attendez la fin : ", " édition")),
    "de": (("Ich habe den viralen ", " getestet"), ("Mein erstes Mal mit ", " 😂"), ("Wartet bis zum Ende: ", "")),
    "vi": (("Thử ", " đang hot"), ("Lần đầu làm ", " 😂"), ("Xem đến cuối nhé: ", " 🔥")),
}

# Comments: (prefix, suffix) around a category keyword, or plain lines (empty suffix, no keyword).
COMMENT_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (("this ", " is everything 😍"), ("where can I find this ", "?"), ("not the ", " 😭😭"),
           ("I needed this ", " today"), ("first", ""), ("lmaooo", ""), ("who's here in 2026?", "")),
    "es": (("ese ", " está brutal 🔥"), ("¿dónde consigo ese ", "?"), ("jajaja no puede ser", ""), ("primero", "")),
    "pt": (("esse ", " é demais"), ("kkkkkk", ""), ("onde compra esse ", "?")),
    "id": (("", " nya keren banget!"), ("wkwkwk", ""), ("beli ", " dimana kak?")),
    "zh": (("这个", "太好看了"), ("哈哈哈哈", ""), ("求", "链接")),
    "ja": (("この", "最高！"), ("草", ""), ("", "どこで買えますか？")),
    "fr": (("ce ", " est incroyable"), ("mdrrr", ""), ("où trouver ce ", " ?")),
    "de": (("dieses ", " ist der Hammer"), ("haha", ""), ("wo gibt es das ", "?")),
    "vi": (("", " đỉnh quá"), ("hahaha", ""), ("mua ", " ở đâu vậy?")),
}

# (gift_type, value_cents per unit, relative frequency)
GIFT_TYPES = (
    ("rose", 1, 0.40), ("tiktok", 1, 0.15), ("finger_heart", 5, 0.15), ("doughnut", 30, 0.12),
    ("hat_and_mustache", 99, 0.08), ("confetti", 130, 0.05), ("galaxy", 1300, 0.03),
    ("lion", 39_000, 0.015), ("universe", 449_900, 0.005),
)

MODEL_VERSIONS = ("ranker-v41", "ranker-v42", "ranker-v42-canary")

# Values that look plausible but are outside the schemas' enums (unknown_enum dirty records).
BOGUS_ENUM_VALUES = ("for_you", "FORYOU", "unknown", "v2_feed", "buy", "", "share_story", "EUR", "tv")
